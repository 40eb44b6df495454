"""Following a streaming answer: every new reply is followed to its end, unless the user
scrolls up; scrolling back to the bottom follows again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, expect

from tests.browser.chat_page import ChatPage
from tests.browser.conftest import new_context
from tests.server_harness import RunningServer

SMALL = {"width": 900, "height": 520}
LONG = "[tokens=400] [delay=8]"

# The last answer's bottom is inside the scroller (it is being followed) while it streams.
FOLLOWED = """(needle) => {
  const scroller = document.querySelector("lt-thread .scroller");
  const answers = document.querySelectorAll('article[data-role="assistant"][data-message-id]');
  const answer = answers[answers.length - 1];
  if (!scroller || !answer || answer.dataset.status !== "streaming") return false;
  if (!answer.textContent.includes(needle)) return false;
  const view = scroller.getBoundingClientRect();
  const box = answer.getBoundingClientRect();
  const inView = box.bottom <= view.bottom + 2 && box.bottom > view.bottom - 120;
  return box.height > view.height && inView;
}"""


@pytest.fixture
async def small(browser: Browser, owner: str, server: RunningServer) -> AsyncIterator[ChatPage]:
    context = await new_context(browser, owner, viewport=SMALL)
    chat = await ChatPage.open(context, server)
    yield chat
    await chat.assert_healthy()
    await context.close()


async def followed(chat: ChatPage, needle: str) -> None:
    await chat.page.wait_for_function(FOLLOWED, arg=needle, polling="raf", timeout=15_000)


# The scroller's scrollTop once it has not moved for 10 frames (a wheel scroll is animated;
# only for a view that is not following anything, or it would never settle).
SETTLED_TOP = """() => new Promise((resolve) => {
  const scroller = document.querySelector("lt-thread .scroller");
  let last = scroller.scrollTop;
  let still = 0;
  const tick = () => {
    const top = scroller.scrollTop;
    still = top === last ? still + 1 : 0;
    last = top;
    if (still >= 10) resolve(top); else requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})"""


async def scroller_top(chat: ChatPage) -> float:
    top = await chat.page.evaluate(SETTLED_TOP)
    assert isinstance(top, (int, float))
    return float(top)


async def test_every_new_answer_is_followed_to_its_end(small: ChatPage) -> None:
    """The first, second and third answers, a regenerated one and an edited one are all
    followed while they stream, in a window too small for any of them."""
    chat = small
    for n in range(3):
        await chat.send(f"long answer {n} {LONG}")
        await followed(chat, "t300 ")
        await chat.wait_answer()
    await chat.last_answer.locator('[data-action="regenerate"]').click()
    await expect(chat.last_answer).to_have_attribute("data-status", "streaming")
    await followed(chat, "t300 ")
    await chat.wait_answer()
    first = chat.questions.nth(1)
    await first.scroll_into_view_if_needed()
    await first.hover()
    await first.locator('[data-action="edit"]').click()
    await chat.page.get_by_label("Edit your message").press("Enter")
    await expect(chat.answers).to_have_count(2)
    await expect(chat.last_answer).to_have_attribute("data-status", "streaming")
    await followed(chat, "t300 ")
    await chat.wait_answer()


async def test_scrolling_up_stops_following_and_the_bottom_resumes_it(small: ChatPage) -> None:
    """Scrolled up while an answer streams, the view stays where the user put it; back at
    the bottom, it follows the answer again."""
    chat = small
    await chat.send("a very long answer [tokens=900] [delay=12]")
    await followed(chat, "t60 ")
    page = chat.page
    await page.locator("lt-thread .scroller").hover()
    await page.mouse.wheel(0, -400)
    jump = page.locator("lt-thread .jump")
    await expect(jump).to_be_visible()
    top = await scroller_top(chat)
    await expect(chat.last_answer_text).to_contain_text("t200 ")
    now = await page.evaluate('document.querySelector("lt-thread .scroller").scrollTop')
    assert now == top
    assert await chat.last_answer.get_attribute("data-status") == "streaming"
    # Back to the bottom by hand: following resumes.
    await page.mouse.wheel(0, 100_000)
    await expect(jump).to_have_count(0)
    await followed(chat, "t400 ")
    # Up again, then the jump button: following resumes too.
    await page.mouse.wheel(0, -400)
    await expect(jump).to_be_visible()
    await jump.click()
    await followed(chat, "t600 ")
    await chat.stop_button.click()
    await chat.wait_answer("cancelled")
