"""What the console's browser tests share: where screenshots go, how Chromium starts, signing in, the
admin's own theme toggle, and what every page is checked for from the styles Chromium rendered (no
sideways overflow, chart text at least 10 px and at least 4.5:1 contrast against its background)."""
from pathlib import Path

SCREENSHOTS = Path(__file__).resolve().parent.parent / ".data" / "screenshots"
# As the machine's own probe starts it: no background connections to a network it does not have.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
MIN_TEXT_PX = 10
MIN_CONTRAST = 4.5


def log_in(page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/admin/")


def theme_toggle_to(page, theme: str) -> None:
    """Click the admin's own theme toggle (it cycles auto, light, dark) until `theme` shows."""
    for _ in range(4):
        if page.evaluate("document.documentElement.dataset.theme") == theme:
            return
        page.locator("button.theme-toggle").first.click()
    assert page.evaluate("document.documentElement.dataset.theme") == theme, f"the toggle never reached {theme}"


# What a reader sees, measured in the page: sideways overflow, and each drawn chart text's rendered size
# (its font size times the drawing's scale) and contrast (WCAG 2) against the first opaque background
# behind it. Charts hidden at this width (another size of the same chart) are not drawn, so not read.
READABILITY = """() => {
  const rgba = text => { const [r, g, b, a = 1] = text.match(/[\\d.]+/g).map(Number); return [r, g, b, a]; };
  const background = element => {
    for (let e = element; e; e = e.parentElement) {
      const colour = rgba(getComputedStyle(e).backgroundColor);
      if (colour[3] > 0) return colour;
    }
    return [255, 255, 255, 1];
  };
  const luminance = rgb => rgb.slice(0, 3).map(v => v / 255)
    .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const texts = [...document.querySelectorAll("svg.cwd-chart text")].filter(t => t.getClientRects().length);
  return {
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    sizes: [...new Set([...document.querySelectorAll("svg.cwd-chart")].filter(s => s.getClientRects().length)
      .map(s => s.dataset.size))],
    line: [...document.querySelectorAll("svg.cwd-chart path.line")].filter(p => p.getClientRects().length)
      .map(p => getComputedStyle(p).stroke)[0] ?? null,
    texts: texts.map(t => {
      const svg = t.ownerSVGElement, style = getComputedStyle(t);
      const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
      const bg = background(t), fg = rgba(style.fill), alpha = fg[3] * Number(style.fillOpacity);
      const seen = fg.slice(0, 3).map((v, i) => v * alpha + bg[i] * (1 - alpha));
      const [light, dark] = [luminance(seen), luminance(bg)].sort((a, b) => b - a);
      return {text: t.textContent, px: parseFloat(style.fontSize) * scale, contrast: (light + 0.05) / (dark + 0.05)};
    }),
  };
}"""
# The innermost elements reaching past the window's right edge: what to fix when a page overflows.
_OVERFLOWING = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && getComputedStyle(e).display !== 'none'
    && ![...e.children].some(c => c.getBoundingClientRect().right > window.innerWidth + 1))
  .slice(0, 5).map(e => `${e.tagName.toLowerCase()}.${e.className.baseVal ?? e.className} in #${e.closest('[id]')?.id}`
    + ` right=${Math.round(e.getBoundingClientRect().right)}`)"""


def assert_readable(page, where: str, *, charts: bool = True) -> dict:
    """No sideways overflow, and every chart text drawn at least MIN_TEXT_PX and MIN_CONTRAST; returns
    what was measured (READABILITY's answer) for a test's own checks."""
    seen = page.evaluate(READABILITY)
    assert seen["overflow"] <= 0, f"{where}: {seen['overflow']} px too wide: {page.evaluate(_OVERFLOWING)}"
    assert bool(seen["texts"]) == charts, f"{where}: {len(seen['texts'])} chart texts"
    for text in seen["texts"]:
        assert text["px"] >= MIN_TEXT_PX, (where, text)
        assert text["contrast"] >= MIN_CONTRAST, (where, text)
    return seen
