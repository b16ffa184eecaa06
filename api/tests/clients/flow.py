"""A new user's first steps, through the Python client generated from the served document.

Run by api/tests/api/clients.rs: `python flow.py BASE_URL` with the generated package
(`coinpulse_api_client`) on PYTHONPATH. Exits non-zero, naming the step, when anything differs
from what the document promises; using only the generated code is the point.
"""

import sys
import time
import uuid

from coinpulse_api_client import AuthenticatedClient, Client
from coinpulse_api_client.api.auth import post_api_v1_auth_login, post_api_v1_auth_register
from coinpulse_api_client.api.jobs import get_api_v1_jobs_id
from coinpulse_api_client.api.market import post_api_v1_crypto_bulk
from coinpulse_api_client.api.portfolios import (
    get_api_v1_portfolios_id_valuation,
    post_api_v1_portfolios,
    post_api_v1_portfolios_id_transactions,
)
from coinpulse_api_client.models import (
    BulkFetchRequest,
    CreatePortfolioRequest,
    CreateTransactionRequest,
    Job,
    JobStatus,
    LoginRequest,
    Portfolio,
    RegisterRequest,
    TokenResponse,
    Transaction,
    TransactionSide,
    Valuation,
)


def expect(step, response, status, model):
    if response.status_code != status or not isinstance(response.parsed, model):
        sys.exit(f"{step}: expected {status} {model.__name__}, got {response.status_code}: "
                 f"{response.content[:500]!r}")
    return response.parsed


def main(base_url):
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    name = "py" + uuid.uuid4().hex[:10]
    email, password = f"{name}@example.com", "generated-client-1"

    expect("register", post_api_v1_auth_register.sync_detailed(
        client=anonymous, body=RegisterRequest(email=email, username=name, password=password)),
        201, TokenResponse)
    tokens = expect("login", post_api_v1_auth_login.sync_detailed(
        client=anonymous, body=LoginRequest(email=email, password=password)), 200, TokenResponse)
    if tokens.token_type != "Bearer" or tokens.user.username != name:
        sys.exit(f"login: unexpected token response {tokens!r}")
    client = AuthenticatedClient(base_url=base_url, token=tokens.access_token,
                                 raise_on_unexpected_status=True)

    job = expect("bulk fetch", post_api_v1_crypto_bulk.sync_detailed(
        client=client, body=BulkFetchRequest(coins=["bitcoin", "ethereum"], vs_currency="usd")),
        202, Job)
    deadline = time.monotonic() + 120
    while job.status != JobStatus.SUCCEEDED:
        if job.status in (JobStatus.FAILED, JobStatus.DEAD, JobStatus.CANCELLED):
            sys.exit(f"bulk fetch: the job ended {job.status}: {job.error}")
        if time.monotonic() > deadline:
            sys.exit(f"bulk fetch: still {job.status} after 120 s")
        time.sleep(0.2)
        job = expect("poll the job", get_api_v1_jobs_id.sync_detailed(job.id, client=client),
                     200, Job)

    portfolio = expect("create a portfolio", post_api_v1_portfolios.sync_detailed(
        client=client, body=CreatePortfolioRequest(name="Long term")), 201, Portfolio)
    for coin, quantity, price in [("bitcoin", "0.5", "30000"), ("ethereum", "2", "1500.25")]:
        expect(f"buy {coin}", post_api_v1_portfolios_id_transactions.sync_detailed(
            portfolio.id, client=client,
            body=CreateTransactionRequest(side=TransactionSide.BUY, coin_id=coin,
                                          quantity=quantity, price=price)),
            201, Transaction)

    valuation = expect("valuation", get_api_v1_portfolios_id_valuation.sync_detailed(
        portfolio.id, client=client), 200, Valuation)
    held = sorted(holding.coin_id for holding in valuation.holdings)
    if held != ["bitcoin", "ethereum"]:
        sys.exit(f"valuation: holdings {held}")
    print(f"ok: job {job.id} succeeded, portfolio {portfolio.id} holds {held}")


if __name__ == "__main__":
    main(sys.argv[1])
