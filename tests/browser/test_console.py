"""The web console at /console/, in a real chromium against a real broker process.

What a user does: open the page, type the token, watch the figures, redrive a dead letter,
cancel a message, purge the queue, and see every figure move without reloading the page.
Every wait is Playwright's waiting `expect` (no sleeps).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from broker_api import Api
from fixtures.broker_process import BrokerProcess
from fixtures.brokers import GUARDED_TOKEN
from playwright.async_api import Browser, Dialog, Locator, Page, expect

pytestmark = pytest.mark.browser

WAIT_MS = 30_000  # generous: a shared, busy machine


@pytest.fixture
async def api(guarded_broker: BrokerProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {GUARDED_TOKEN}"}) as s:
        yield Api(s, guarded_broker.url)


@pytest.fixture
async def page(browser: Browser, guarded_broker: BrokerProcess) -> AsyncIterator[Page]:
    p = await browser.new_page()
    expect.set_options(timeout=WAIT_MS)
    await p.goto(f"{guarded_broker.url}/console/")
    yield p
    await p.close()


def figure(page: Page, queue: str, group: str, name: str) -> Locator:
    return page.locator(
        f'section[data-queue="{queue}"] tr[data-group="{group}"] td[data-figure="{name}"]')


async def connect(page: Page, token: str) -> None:
    await page.fill("#token", token)
    await page.click("#connect")


async def test_a_wrong_token_shows_the_brokers_refusal(page: Page, api: Api) -> None:
    await api.create("orders", "workers")
    await connect(page, "not-the-token")
    await expect(page.locator("#error")).to_contain_text("401 unauthorized")
    await expect(page.locator("#error")).to_contain_text("Check the token")
    await expect(page.locator("section.queue")).to_have_count(0)
    await connect(page, GUARDED_TOKEN)  # the right one next: the queues show, the error goes
    await expect(page.locator("#error")).to_be_hidden()
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("0")


async def test_figures_move_with_redrive_cancel_and_purge(page: Page, api: Api) -> None:
    await api.ok("PUT", "/v1/queues/orders", {"max_deliveries": 1})
    await api.ok("PUT", "/v1/queues/orders/groups/workers")
    await api.publish("orders", *({"body": {"n": n}} for n in range(5)))
    (poison,) = await api.receive("orders", "workers", consumer="w1", max=1)
    await api.settle("nack", "orders", "workers", [poison["receipt"]])  # its only delivery: dead

    await connect(page, GUARDED_TOKEN)
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("4")
    await expect(figure(page, "orders", "workers", "dead")).to_have_text("1")
    await expect(figure(page, "orders", "workers", "consumers")).to_have_text("1")
    # Live: a publish shows up without a reload, and the charts are drawn.
    await api.publish("orders", {"body": "late"})
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("5")
    await expect(figure(page, "orders", "workers", "lag")).to_have_text("5")
    await expect(page.locator('section[data-queue="orders"] .uplot')).to_have_count(2)

    # Redrive the dead letter from its panel.
    queue = page.locator('section[data-queue="orders"]')
    await queue.locator('tr[data-group="workers"]').get_by_role(
        "button", name="Dead letters").click()
    dead_row = page.locator(f'#panel tr[data-id="{poison["id"]}"]')
    await expect(dead_row).to_contain_text("nacked after 1 deliveries")
    await dead_row.get_by_role("button", name="Redrive").click()
    await expect(page.locator("#outcome")).to_have_text(
        "Redrove 1 dead letter(s) of orders / workers.")
    await expect(figure(page, "orders", "workers", "dead")).to_have_text("0")
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("6")

    # Browse the messages and cancel one.
    await queue.get_by_role("button", name="Browse messages").click()
    await expect(page.locator("#panel tbody tr")).to_have_count(6)
    first = page.locator("#panel tbody tr").first
    await first.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#outcome")).to_contain_text("Cancelled message")
    await expect(page.locator("#panel tbody tr")).to_have_count(5)
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("5")

    # Purge the queue (the page asks first).
    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.once("dialog", accept)
    await queue.get_by_role("button", name="Purge queue").click()
    await expect(page.locator("#outcome")).to_have_text(
        "Purged 5 message(s) from queue orders.")
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("0")
    await expect(figure(page, "orders", "workers", "lag")).to_have_text("0")
    await expect(page.locator("#error")).to_be_hidden()
