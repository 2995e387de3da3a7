"""The web console at /console/, in a real chromium against a real broker process.

What a user does: open the page, type the token, watch the figures, redrive a dead letter,
cancel a message, purge a group and the queue, and see every figure move without reloading
the page; a wrong token shows 401, a read-only token sees only its queues and a 403 when it
purges.
Every wait is Playwright's waiting `expect` (no sleeps).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

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


async def accept(dialog: Dialog) -> None:
    await dialog.accept()


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


async def test_figures_move_with_redrive_browse_cancel_and_purge(page: Page, api: Api) -> None:
    await api.ok("PUT", "/v1/queues/orders", {"max_deliveries": 1})
    for group in ("workers", "audit"):
        await api.ok("PUT", f"/v1/queues/orders/groups/{group}")
    ids = await api.publish("orders", *({"body": {"n": n}} for n in range(5)))
    (poison,) = await api.receive("orders", "workers", consumer="w1", max=1)
    await api.settle("nack", "orders", "workers", [poison["receipt"]])  # its only delivery: dead
    (held,) = await api.receive("orders", "workers", consumer="w1", max=1)  # stays in flight

    await connect(page, GUARDED_TOKEN)
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("3")
    await expect(figure(page, "orders", "workers", "in_flight")).to_have_text("1")
    await expect(figure(page, "orders", "workers", "dead")).to_have_text("1")
    await expect(figure(page, "orders", "workers", "consumers")).to_have_text("1")
    await expect(figure(page, "orders", "workers", "consumers")).to_have_attribute(
        "title", re.compile(r"^w1: 1 in flight, seen .* ago$"))
    await expect(figure(page, "orders", "audit", "depth")).to_have_text("5")
    await expect(figure(page, "orders", "audit", "oldest")).to_have_text(re.compile(r" m?s$"))
    # Live: a publish shows up without a reload, and the charts are drawn (rates, 2 groups).
    await api.publish("orders", {"body": "late"})
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("4")
    await expect(figure(page, "orders", "workers", "lag")).to_have_text("5")
    await expect(figure(page, "orders", "audit", "depth")).to_have_text("6")
    queue = page.locator('section[data-queue="orders"]')
    await expect(queue.locator(".uplot")).to_have_count(3)
    # Rates need two events (a change of the broker's counters over its clock): then a figure.
    await expect(figure(page, "orders", "workers", "ack_rate")).to_have_text(
        re.compile(r"^\d+\.\d/s$"))
    await expect(queue.locator(".figures")).to_contain_text("6 stored · 6 published · ")

    # Redrive the dead letter from its panel.
    await queue.locator('tr[data-group="workers"]').get_by_role(
        "button", name="Dead letters").click()
    dead_row = page.locator(f'#panel tr[data-id="{poison["id"]}"]')
    await expect(dead_row).to_contain_text("nacked after 1 deliveries")
    await dead_row.get_by_role("button", name="Redrive").click()
    await expect(page.locator("#outcome")).to_have_text(
        "Redrove 1 dead letter(s) of orders / workers.")
    await expect(figure(page, "orders", "workers", "dead")).to_have_text("0")
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("5")
    await expect(page.locator("#panel tr[data-id]")).to_have_count(0)

    # Browse: every stored message, then the one in flight for workers; cancel the oldest.
    rows = page.locator("#panel tr[data-id]")
    await queue.get_by_role("button", name="Browse messages").click()
    await expect(rows).to_have_count(6)
    await page.select_option("#browse-group", "workers")
    await page.select_option("#browse-state", "in_flight")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-id", held["id"])
    await page.select_option("#browse-group", "")
    await expect(rows).to_have_count(6)
    await expect(rows.first).to_have_attribute("data-id", ids[0])
    await rows.first.get_by_role("button", name="Cancel").click()
    await expect(page.locator("#outcome")).to_have_text(f"Cancelled message {ids[0]} of orders.")
    await expect(rows).to_have_count(5)
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("4")
    await expect(figure(page, "orders", "audit", "depth")).to_have_text("5")

    # Purge one group, then the queue (the page asks first, each time).
    page.once("dialog", accept)
    await queue.locator('tr[data-group="audit"]').get_by_role(
        "button", name="Purge group").click()
    await expect(page.locator("#outcome")).to_have_text(
        "Purged 5 message(s) from group audit of orders.")
    await expect(figure(page, "orders", "audit", "depth")).to_have_text("0")
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("4")
    page.once("dialog", accept)
    await queue.get_by_role("button", name="Purge queue").click()
    await expect(page.locator("#outcome")).to_have_text(
        "Purged 4 message(s) from queue orders.")
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("0")
    await expect(figure(page, "orders", "workers", "lag")).to_have_text("1")  # in flight stays
    await expect(page.locator("#error")).to_be_hidden()


async def test_a_read_only_token_sees_its_queues_and_a_refusal_when_it_acts(
    browser: Browser, tmp_path: Path, broker_factory: Callable[..., BrokerProcess],
) -> None:
    tokens = tmp_path / "scoped-tokens"
    tokens.write_text(f"{GUARDED_TOKEN} admin\nreader-token read queues=orders\n")
    b = broker_factory("--token-file", str(tokens))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {GUARDED_TOKEN}"}) as s:
        api = Api(s, b.url)
        await api.create("orders", "workers")
        await api.create("payments", "workers")
        await api.publish("orders", {"body": 1}, {"body": 2})
    page = await browser.new_page()
    try:
        await page.goto(f"{b.url}/console/")
        await connect(page, "reader-token")
        await expect(figure(page, "orders", "workers", "depth")).to_have_text("2")
        await expect(page.locator("section.queue")).to_have_count(1)  # not payments
        page.once("dialog", accept)
        await page.locator('section[data-queue="orders"]').get_by_role(
            "button", name="Purge queue").click()
        await expect(page.locator("#error")).to_contain_text("403 forbidden")
        await expect(page.locator("#error")).to_contain_text("This token lacks the right for it.")
        await expect(figure(page, "orders", "workers", "depth")).to_have_text("2")  # nothing went
    finally:
        await page.close()


async def test_the_page_reconnects_after_the_broker_restarts(
    page: Page, api: Api, guarded_broker: BrokerProcess,
) -> None:
    await api.create("orders", "workers")
    await api.publish("orders", {"body": 1})
    await connect(page, GUARDED_TOKEN)
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("1")
    await asyncio.to_thread(guarded_broker.restart)  # SIGTERM: the stream ends with the drain
    await api.publish("orders", {"body": 2})
    await expect(figure(page, "orders", "workers", "depth")).to_have_text("2")
    await expect(page.locator("#status")).to_contain_text("Connected")
    await expect(page.locator("#error")).to_be_hidden()
