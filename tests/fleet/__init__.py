"""The fleet test (issue 13): a rolling reload over SSH with Ansible across an Active/Active cluster."""
