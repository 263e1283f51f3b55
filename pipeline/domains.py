"""Bare domains: host names written without ``http(s)://`` that Slack turns into links.

A reply saying ``get it from evil-downloads.com/setup.exe`` is a link once Slack shows it, so the
sanitizer and the ``urls`` gate must see these forms too. :func:`find_bare_domains` finds a
token of dot-separated labels ending in a known TLD, with an optional port and path, that is not
part of an e-mail address, a file path or a longer dotted name.

Tech commentary is full of names that look like domains, so a token WITHOUT a path, a port or a
``www.`` prefix is taken for a name, not a domain, when

- its TLD is also a common file extension or a short English/attribute word (``setup.py``,
  ``README.md``, ``main.rs``, ``run.sh``, ``model.pt``, ``archive.zip``, ``user.id``,
  ``df.at``, ``x.to``): :data:`NAME_LIKE_TLDS`. ``docs.rs/tokio`` or ``www.x.py`` still count;
- its TLD is capitalised while the rest is not all caps (even with a path): an arXiv
  category or old arXiv id (``cs.AI``, ``stat.ML``, ``cs.SE/0010035``), ``Socket.IO``,
  ``System.Net``, a missing space in ``fast.It``. All caps is a domain (``EVIL.COM``) except
  ``.NET``/``.IO``, product names (``ASP.NET``, ``VB.NET``);
- its first label is a code object or module that is never a subdomain (``self``, ``this``,
  ``java``, ``np``...: :data:`CODE_ROOTS`), or, with two labels only, one that could also be a
  subdomain (``log.info``, ``app.dev``, ``console.info``: :data:`SHORT_CODE_ROOTS`); or it is
  called like a function (``tensor.to(``);
- all the labels before the TLD but one are numbers (a version such as ``1.0.dev``).

``node.js``, ``Vue.js``, ``config.yaml``, ``index.html``, ``v1.2.3``, ``3.14``, ``e.g.`` and
``i.e.`` never match: their last label is not a TLD. Brand names that are domains
(``Booking.com``, ``Character.ai``) are domains; they are allowed when the evidence names them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# Generic TLDs seen in tech writing and in phishing. Left out on purpose, because they are far
# more often attribute names in code than hosts: .name, .run, .email, .host.
_GENERIC_TLDS = """
    com org net edu gov mil int info biz app dev page xyz tech site online blog news shop store
    club live link click top icu zip mov cloud wiki art design digital website space fun world
    today social media studio agency tools
"""
# Every delegated two-letter country-code TLD (ISO 3166 codes plus ac, eu, uk). Not "any two
# letters": torch.nn or np.xy must stay names.
_COUNTRY_TLDS = """
    ac ad ae af ag ai al am ao aq ar as at au aw ax az ba bb bd be bf bg bh bi bj bm bn bo br bs
    bt bw by bz ca cc cd cf cg ch ci ck cl cm cn co cr cu cv cw cx cy cz de dj dk dm do dz ec ee
    eg er es et eu fi fj fk fm fo fr ga gd ge gf gg gh gi gl gm gn gp gq gr gs gt gu gw gy hk hm
    hn hr ht hu id ie il im in io iq ir is it je jm jo jp ke kg kh ki km kn kp kr kw ky kz la lb
    lc li lk lr ls lt lu lv ly ma mc md me mg mh mk ml mm mn mo mp mq mr ms mt mu mv mw mx my mz
    na nc ne nf ng ni nl no np nr nu nz om pa pe pf pg ph pk pl pm pn pr ps pt pw py qa re ro rs
    ru rw sa sb sc sd se sg sh si sk sl sm sn so sr ss st sv sx sy sz tc td tf tg th tj tk tl tm
    tn to tr tt tv tw tz ua ug uk us uy uz va vc ve vg vi vn vu wf ws ye yt za zm zw
"""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


KNOWN_TLDS = _words(_GENERIC_TLDS + _COUNTRY_TLDS)

# TLDs that, in a bare "name.tld" without a path, are far more likely a file extension
# (py md rs sh pl pm cc tf ml mk ps so st sc gs gd nu cr ls mo pt sv nc cu cl tk ms mm ar re
# zip mov) or an English word / attribute name (am as at by do id in is it me my no so to).
NAME_LIKE_TLDS = _words(
    """
    py md rs sh pl pm cc tf ml mk ps so st sc gs gd nu cr ls mo pt sv nc cu cl tk ms mm ar re
    zip mov am as at by do id in is it me my no so to
    """
)
# Second-level labels under which a name-like ccTLD is still a domain: example.co.in, x.ac.id.
_SECOND_LEVEL = _words("co com ac org net gov edu or ne go")
# All-caps TLDs of product names: ASP.NET, VB.NET, ADO.NET, Socket.IO, System.IO.
_PRODUCT_TLDS = frozenset({"NET", "IO"})
# First labels of dotted code names whose last part happens to be a TLD (java.io, self.app,
# this.props.page, process.env.dev, Dockerfile.dev), compared case-folded. Never subdomains.
CODE_ROOTS = _words(
    """
    self this cls super os sys np pd tf torch jax java javax scipy numpy pandas std ctx req res
    process module exports window document props flask django dockerfile makefile readme
    changelog license requirements
    """
)
# The same, but also common subdomains (app.example.com, console.cloud.google.com): only a
# two-label name counts (log.info, app.dev, user.id).
SHORT_CODE_ROOTS = _words(
    "app user event obj config settings log logger logging console request response"
)

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# No letter, digit, "@", ".", "-", "/", "\" or "$" just before (e-mail domains, file paths,
# "x.example.com" inside a longer dotted name, $obj.name); an "_" is allowed there because
# Slack italics wrap text in underscores. No "@" right after (the local part of an e-mail).
_BARE = re.compile(
    rf"(?<![^\W_])(?<![@./\\$-])"
    rf"(?P<host>(?:{_LABEL}\.)+(?P<tld>[a-z]{{2,24}}))(?![^\W_]|[@-])(?!\.[^\W_])"
    r"(?P<port>:\d{1,5}(?![\d:]))?"
    r"(?P<path>/[^\s<>|\"'`“”‘’«»]*)?",  # a closing curly quote ends the link, as in Slack
    re.I,
)
_TRAILING_PUNCT = ".,;:!?'\"*_~"
HOST_KEY_PREFIX = " host:"  # see host_key


@dataclass(frozen=True)
class BareDomain:
    """A bare domain found in a text: ``text[start:end]`` is what was written."""

    start: int
    end: int
    text: str
    host: str

    @property
    def defused(self) -> str:
        """The host with its dots broken (``evil[.]com``): readable, and no longer a link."""
        return self.host.replace(".", "[.]")


def trim_link_tail(link: str) -> str:
    """Drop punctuation that ends a sentence rather than the link (and an unbalanced ``)``)."""

    def ends_badly(u: str) -> bool:
        return u[-1] in _TRAILING_PUNCT or (u[-1] == ")" and u.count("(") < u.count(")"))

    while link and ends_badly(link):
        link = link[:-1]
    return link


def host_key(host_or_url: str) -> str:
    """The key under which a host is allowed: case-folded, ``www.`` and port stripped.

    ``https://WWW.Example.org:8080/x``, ``example.org/x`` and ``Example.org`` share one key.
    The key starts with a space, which :func:`pipeline.sanitize.url_key` never produces (it
    strips its input), so host keys and URL keys can share one set without colliding."""
    text = host_or_url.strip()
    if "://" not in text:
        text = "//" + text
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        host = ""
    host = host.rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    return HOST_KEY_PREFIX + host


def _is_domain(m: re.Match[str], text: str) -> bool:
    host, tld = m.group("host"), m.group("tld")
    if tld.lower() not in KNOWN_TLDS:
        return False
    labels = host.split(".")
    if labels[0].lower() == "www":
        return True
    if not tld.islower() and not host.isupper():
        return False  # cs.AI, cs.SE/0010035 (an old arXiv id), Socket.IO, System.Net, "fast.It"
    if m.group("path") or m.group("port"):
        return True
    if sum(label.isdigit() for label in labels[:-1]) >= 2:
        return False  # a version: 1.0.dev, 2.1.rc
    if tld in _PRODUCT_TLDS:
        return False  # ASP.NET, VB.NET
    if tld.lower() in NAME_LIKE_TLDS and not (
        len(labels) > 2 and labels[-2].lower() in _SECOND_LEVEL
    ):
        return False  # setup.py, README.md, user.id
    root = labels[0].lower()
    if root in CODE_ROOTS or (len(labels) == 2 and root in SHORT_CODE_ROOTS):
        return False  # java.io, this.props.page, log.info; app.example.com is still a host
    return not text.startswith("(", m.end())  # log.info(...) is a call


def find_bare_domains(text: str) -> list[BareDomain]:
    """Bare domains and host/path links in ``text`` (which must not hold ``http(s)://`` URLs:
    the caller passes the text around them). Trailing sentence punctuation is not part of it."""
    found = []
    for m in _BARE.finditer(text):
        if not _is_domain(m, text):
            continue
        written = trim_link_tail(m.group(0))
        found.append(BareDomain(m.start(), m.start() + len(written), written, m.group("host")))
    return found


def defuse_bare_domains(text: str, allowed: set[str]) -> str:
    """Replace each bare domain whose :func:`host_key` is not in ``allowed`` by its defused host
    (``evil-downloads.com/setup.exe`` -> ``evil-downloads[.]com``).

    Defused rather than dropped: the sentence still reads ("download it from evil[.]com"), the
    reader still learns which site the source named, but nothing in it is a link any more. The
    path and port go: they carry the payload (``/setup.exe``) and could hold another domain."""
    out, pos = [], 0
    for domain in find_bare_domains(text):
        if host_key(domain.host) in allowed:
            continue
        out += [text[pos : domain.start], domain.defused]
        pos = domain.end
    return "".join(out) + text[pos:] if out else text
