"""Schemathesis auth hook: every test case runs as a real, active account.

Without `COINPULSE_TOKEN`, each (re-)authentication registers a fresh user, so one case that
deletes its account or revokes its sessions cannot make the following cases answer 401. With
`COINPULSE_TOKEN` (an administrator's access token), every case uses that token: a fuzzed
`PATCH /admin/users/{id}` may change the administrator's own email, so logging in again could
fail, while the token stays valid (the last administrator cannot be disabled or demoted).
`COINPULSE_API_URL` is the api's base URL.
"""

import os

import requests
import schemathesis

BASE_URL = os.environ["COINPULSE_API_URL"]


def _token() -> str:
    token = os.environ.get("COINPULSE_TOKEN")
    if token:
        return token
    # os.urandom, not random: schemathesis seeds `random`, which would repeat names.
    name = "st" + os.urandom(8).hex()
    body = {
        "email": f"{name}@example.com",
        "username": name,
        # Not the document's example password: a generated password change must not succeed
        # by guessing it.
        "password": os.urandom(12).hex(),
    }
    response = requests.post(f"{BASE_URL}/api/v1/auth/register", json=body, timeout=30)
    response.raise_for_status()
    return response.json()["access_token"]


@schemathesis.auth()
class ActiveAccount:
    def get(self, case, context):
        return _token()

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
