"""A minimal client of Cinder's block-storage API v3 (plain HTTP, urllib).

With ``auth_strategy = noauth`` cinder-api takes ``X-Auth-Token: user:project``
as given and makes the caller an admin (cinder/api/middleware/auth.py).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

__all__ = ["ApiError", "CinderAPI"]


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        super().__init__(f"{method} {path} -> {status}: {body[:300]}")


@dataclass
class CinderAPI:
    port: int
    # Hex: cinder routes /v3/{project_id}/... only for ids matching
    # project_id_regex (default [0-9a-f\-]+), "admin" would 404.
    project: str = "a11ce0000000400080000000000000aa"
    host: str = "127.0.0.1"
    timeout: float = 30.0

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}/v3/{self.project}"

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("X-Auth-Token", f"admin:{self.project}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raise ApiError(method, path, exc.code, exc.read().decode(errors="replace")) from None

    def answering(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/", timeout=2) as resp:
                return resp.status < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except OSError:
            return False

    # -- resources ---------------------------------------------------------------
    def services(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/os-services")[1]["services"])

    def create_type(self, name: str, backend: str) -> str:
        vtype = self.request("POST", "/types", {"volume_type": {"name": name}})[1]["volume_type"]
        self.request("POST", f"/types/{vtype['id']}/extra_specs", {"extra_specs": {"volume_backend_name": backend}})
        return str(vtype["id"])

    def create_volume(self, name: str, size: int, volume_type: str | None = None) -> str:
        """A new volume's id; without a type, cinder's default type (no extra specs)."""
        volume: dict[str, Any] = {"name": name, "size": size}
        if volume_type is not None:
            volume["volume_type"] = volume_type
        return str(self.request("POST", "/volumes", {"volume": volume})[1]["volume"]["id"])

    def extend_volume(self, volume_id: str, new_size: int) -> None:
        self.request("POST", f"/volumes/{volume_id}/action", {"os-extend": {"new_size": new_size}})

    def delete_volume(self, volume_id: str) -> None:
        self.request("DELETE", f"/volumes/{volume_id}")

    def volume(self, volume_id: str) -> dict[str, Any] | None:
        try:
            return dict(self.request("GET", f"/volumes/{volume_id}")[1]["volume"])
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create_backup(self, volume_id: str, name: str) -> str:
        body = {"backup": {"volume_id": volume_id, "name": name}}
        return str(self.request("POST", "/backups", body)[1]["backup"]["id"])

    def backup(self, backup_id: str) -> dict[str, Any] | None:
        try:
            return dict(self.request("GET", f"/backups/{backup_id}")[1]["backup"])
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def volumes(self) -> dict[str, dict[str, Any]]:
        """Every volume of the project that is not deleted, by id (one request)."""
        found: dict[str, dict[str, Any]] = {}
        marker = ""
        while True:
            query = "/volumes/detail?limit=1000" + (f"&marker={marker}" if marker else "")
            page = self.request("GET", query)[1]["volumes"]
            for vol in page:
                found[vol["id"]] = vol
            if len(page) < 1000:
                return found
            marker = page[-1]["id"]
