"""What the browser tests check on every page: text cut short, and requests that leave the app's own address."""
from __future__ import annotations

from urllib.parse import urlsplit

# Text the person cannot read in full: a button whose label (or any element inside it) is wider than its box;
# any element holding text that is clipped (overflow hidden or clip, or an ellipsis) because it is wider than
# its box (captions, metrics); a select box whose value is wider than its box. Scrollable boxes (overflow auto)
# are not cut. Text shortened with an ellipsis whose whole is in a title (shown on hover) is not cut either.
# Shadow roots too.
CUT_TEXT = """() => {
  const cut = [];
  const wider = (node) => node.clientWidth && node.scrollWidth > node.clientWidth + 1;
  const visible = (node) => { const box = node.getBoundingClientRect(); return box.width > 2 && box.height > 2; };
  // Shortened on purpose: an ellipsis shows it, and the element (or one around it) holds the whole in its title,
  // shown on hover (a path shortened in the middle, a class name under a small thumbnail).
  const shortenedWhole = (node) => {
    const holder = node.closest('[title]');
    return Boolean(holder && holder.title.includes(node.textContent.trim()));
  };
  const label = (node) => (node.innerText || node.getAttribute('aria-label') || node.title || '').trim();
  const visit = (root) => {
    for (const button of root.querySelectorAll('button')) {
      if (!visible(button)) continue;
      if ([button, ...button.querySelectorAll('*')].some(wider)) cut.push('button: ' + label(button));
    }
    for (const node of root.querySelectorAll('*')) {
      if (node.closest('button') || !visible(node) || !wider(node)) continue;
      const hasText = [...node.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
      if (!hasText) continue;
      const style = getComputedStyle(node);
      if (style.textOverflow === 'ellipsis' && shortenedWhole(node)) continue;
      if (['hidden', 'clip'].includes(style.overflowX) || style.textOverflow === 'ellipsis') {
        cut.push(node.tagName.toLowerCase() + ': ' + label(node));
      }
    }
    for (const input of root.querySelectorAll('[data-testid="stSelectbox"] input')) {
      if (visible(input) && wider(input)) cut.push('select box: ' + input.value);
    }
    for (const host of root.querySelectorAll('*')) if (host.shadowRoot) visit(host.shadowRoot);
  };
  visit(document);
  return cut;
}"""


def same_origin(url: str, app: str) -> bool:
    """Whether a request ``url`` goes to the app at ``app`` (http, its websocket, a blob or data URL it made)."""
    if url.startswith("data:") or url == "about:blank":
        return True
    if url.startswith("blob:"):
        url = url[len("blob:"):]
    target, own = urlsplit(url), urlsplit(app)
    return target.hostname == own.hostname and target.port == own.port
