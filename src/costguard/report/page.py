"""The report as one self-contained HTML page, made from the run's facts (`report/facts.py`).

No network: the style and the little script are inline, the chart is inline SVG, thumbnails
and full images are linked by paths relative to the page (it sits in the run's output
folder), so it opens from disk and from a CI artifact alike. Every text that comes from a
queue, a provider or a user (keys, prompts, reasons, owner names) is escaped.

The contact sheet stays quick at 10,000 images: tiles are plain markup laid out by the
browser's grid, each skipped by layout and paint until it nears the screen
(`content-visibility: auto`), and thumbnails load lazily.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from decimal import Decimal
from html import escape
from typing import Any

from costguard.execution.progress import clock_text
from costguard.money import usd, usd_together
from costguard.report.facts import STATUSES
from costguard.report.thumbs import Thumb

RUN_META = "costguard-run"
"""The `<meta name=...>` naming the run a page reports: how costguard knows a page is its own."""

STATUS_WORDS = {
    "ok": "ok",
    "refused": "refused",
    "failed": "failed",
    "expired": "expired",
    "cancelled": "cancelled",
}


def render(
    facts: Mapping[str, Any],
    *,
    thumbs: Mapping[str, Thumb | str],
    chart: str | None,
    version: str,
) -> str:
    """The page for `facts`, with `thumbs` (image name -> its thumbnail, or why there is none)
    and the spend `chart` (inline SVG, or None when the ledger had nothing to draw)."""
    run = facts["run"]
    parts = [
        _head(run, version),
        "<body>",
        _header(facts),
        _nav(facts),
        '<main id="top">',
        _cards(facts),
        _retry(facts),
        _sheet(facts, thumbs),
        _cost(facts),
        _spend(facts, chart),
        _parts(facts),
        "</main>",
        _footer(facts, version),
        f"<script>{_SCRIPT}</script>",
        "</body></html>\n",
    ]
    return "\n".join(p for p in parts if p)


# --- head and header -----------------------------------------------------------------------


def _head(run: Mapping[str, Any], version: str) -> str:
    title = f"costguard report: run {run['id']}" + (" (rehearsal)" if run["rehearsal"] else "")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta name="generator" content="costguard {escape(version)}">\n'
        f'<meta name="{RUN_META}" content="{escape(run["id"])}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style></head>"
    )


def _header(facts: Mapping[str, Any]) -> str:
    run = facts["run"]
    state = "complete" if run["complete"] else f"in progress ({run['status']})"
    mode = "Batch API (half price)" if run["mode"] == "batch" else "sync calls (full price)"
    lines = [
        "<header>",
        f"<h1>Run <code>{escape(run['id'])}</code></h1>",
        (
            f'<p class="meta"><span class="pill {"done" if run["complete"] else "busy"}">'
            f"{escape(state)}</span> {escape(mode)} · created {escape(_moment(run['created']))}"
            f" · {run['requests']:,} requests, {run['images']:,} images · queue "
            f"<code>{escape(run['queue'])}</code></p>"
        ),
    ]
    if run["rehearsal"]:
        lines.append(
            '<p class="rehearsal" role="note"><b>Rehearsal.</b> This run went to costguard\'s '
            f"simulator (scenario <code>{escape(str(run['scenario']))}</code>), not to a "
            "provider: no money was spent, the images are simulated, and every amount is what "
            "the same requests would have cost. Its spend is not counted in any budget.</p>"
        )
    if facts.get("prompts"):
        lines.append(f'<p class="note">{escape(facts["prompts"])}</p>')
    lines.append("</header>")
    return "\n".join(lines)


def _nav(facts: Mapping[str, Any]) -> str:
    chips = [
        f'<a class="chip s-{escape(status)}" href="#s-{escape(status)}">'
        f"{escape(status)} <b>{count:,}</b></a>"
        for status, count in facts["counts"].items()
    ]
    if facts["not_collected"]:
        chips.append(f'<span class="chip">not collected <b>{facts["not_collected"]:,}</b></span>')
    links = " ".join(
        f'<a href="#{anchor}">{label}</a>'
        for anchor, label in (
            ("sheet", "Contact sheet"),
            ("cost", "Cost"),
            ("spend", "Spend over time"),
            ("parts", "Jobs"),
        )
    )
    return f'<nav><div class="chips">{" ".join(chips)}</div><div class="links">{links}</div></nav>'


def _cards(facts: Mapping[str, Any]) -> str:
    cost = facts["cost"]
    actual = Decimal(cost["actual_usd"])
    expected = Decimal(cost["estimate"]["expected_usd"])
    maximum = Decimal(cost["estimate"]["max_usd"])
    shown_actual, shown_expected, shown_max = usd_together(actual, expected, maximum)
    rehearsal = facts["run"]["rehearsal"]
    ok = facts["counts"].get("ok", 0)
    cards = [
        _card(
            "Would have cost" if rehearsal else "Actual cost",
            shown_actual,
            f"{ok:,} of {facts['run']['requests']:,} requests ok",
        ),
        _card("Estimate", shown_expected, f"expected; at most {shown_max}"),
    ]
    other = cost["other_mode"]
    if other["usd"] is not None and facts["run"]["mode"] == "batch":
        saving, at_sync = usd_together(Decimal(other["saving_usd"]), Decimal(other["usd"]))
        cards.append(_card("Batch saving", saving, f"against {at_sync} in sync calls"))
    elif other["usd"] is not None:
        extra, in_batch = usd_together(actual - Decimal(other["usd"]), Decimal(other["usd"]))
        cards.append(_card("Sync premium", extra, f"over {in_batch} in batch"))
    spend = facts.get("spend") or {}
    if spend.get("limit_usd") is not None:
        left = Decimal(spend["remaining_usd"])
        limit = usd(Decimal(spend["limit_usd"]))
        title, sub = (
            (f"Budget {spend['budget']}", f"left of {limit} this window")
            if spend.get("budget")
            else ("Under --max-usd", f"left of {limit} for this run")
        )
        cards.append(_card(title, usd(left), sub, warn=left < 0))
    return f'<section class="cards">{"".join(cards)}</section>'


def _card(title: str, value: str, sub: str, *, warn: bool = False) -> str:
    return (
        f'<div class="card{" warn" if warn else ""}"><div class="t">{escape(title)}</div>'
        f'<div class="v">{escape(value)}</div><div class="s">{escape(sub)}</div></div>'
    )


def _retry(facts: Mapping[str, Any]) -> str:
    retry = facts["retry"]
    lines = []
    if retry["count"]:
        where = (
            f"<code>{escape(retry['file'])}</code>"
            if retry["written"]
            else "<code>retry.jsonl</code> (written when the run completes)"
        )
        lines.append(
            f"<p><b>{retry['count']:,}</b> request(s) to run again are in {where}. "
            "To send them as a new run:</p>"
            f'<pre class="cmd"><code>{escape(retry["command"])}</code></pre>'
        )
    if retry["refused_left_out"]:
        lines.append(
            f"<p>{retry['refused_left_out']:,} refused on safety grounds are left out of "
            "<code>retry.jsonl</code>: they would likely be refused again (a run started with "
            "<code>--retry-refused</code> writes them there too).</p>"
        )
    if not lines:
        return ""
    return '<section id="retry" class="callout"><h2>Retry</h2>' + "".join(lines) + "</section>"


# --- the contact sheet ---------------------------------------------------------------------


def _sheet(facts: Mapping[str, Any], thumbs: Mapping[str, Thumb | str]) -> str:
    by_status: dict[str, dict[tuple[str, str, str, str | None], list[Mapping[str, Any]]]] = {}
    for image in facts["images"]:
        sub = (image["part"], image["model"], image["size"], image["quality"])
        by_status.setdefault(image["status"], {}).setdefault(sub, []).append(image)
    order = [s for s in STATUSES if s in by_status] + sorted(by_status.keys() - set(STATUSES))
    out = [
        '<section id="sheet"><h2>Contact sheet</h2>',
        (
            '<p class="tools"><label>Find <input id="find" type="search" '
            'placeholder="key or prompt" autocomplete="off"></label> '
            '<span id="found" aria-live="polite"></span></p>'
        ),
    ]
    if not order:
        out.append('<p class="empty">Nothing collected yet.</p>')
    for status in order:
        subgroups = by_status[status]
        requests = sum(len(images) for images in subgroups.values())
        pictures = sum(len(i["files"]) for images in subgroups.values() for i in images)
        counted = f"{requests:,} request{'s' if requests != 1 else ''}" + (
            f", {pictures:,} images" if pictures != requests and pictures else ""
        )
        out.append(
            f'<details class="status s-{escape(status)}" id="s-{escape(status)}" open>'
            f"<summary><h3>{escape(status)} <span>{counted}</span></h3></summary>"
        )
        for (part, model, size, quality), images in subgroups.items():
            label = " · ".join(x for x in (model, size, quality) if x)
            out.append(
                f'<div class="sub"><h4>{escape(label)} <span>· {len(images):,} in part '
                f"{escape(part)}</span></h4>"
                '<div class="grid">'
            )
            for image in images:
                out.extend(_tiles(image, thumbs))
            out.append("</div></div>")
        out.append("</details>")
    out.append("</section>")
    return "\n".join(out)


def _tiles(image: Mapping[str, Any], thumbs: Mapping[str, Thumb | str]) -> Iterator[str]:
    """One tile per image a request returned (`key · 2 of 3` when it asked for several), or
    one tile saying why it returned none."""
    key = escape(image["key"])
    prompt = escape(image["prompt"] or "")
    files = image["files"]
    said = f'<span class="p" title="{prompt}">{prompt}</span>' if prompt else ""
    cost = f'<span class="c">{escape(usd(Decimal(image["cost_usd"])))}</span>'
    if image["status"] != "ok" or not files:
        reason = escape(image["reason"] or "no reason given")
        yield (
            f'<figure class="tile bad"><div class="why"><b>{escape(image["status"])}</b>'
            f'<p>{reason}</p></div><figcaption><span class="k">{key}</span>{said}{cost}'
            "</figcaption></figure>"
        )
        return
    for number, name in enumerate(files, start=1):
        which = f' <span class="of">{number} of {len(files)}</span>' if len(files) > 1 else ""
        thumb = thumbs.get(name)
        if isinstance(thumb, Thumb):
            picture = (
                f'<img src="{escape(_href(thumb.path))}" width="{thumb.width}" '
                f'height="{thumb.height}" loading="lazy" decoding="async" alt="{key}" '
                f'title="{thumb.source_width}x{thumb.source_height}">'
            )
        else:
            why = thumb if isinstance(thumb, str) else "no thumbnail"
            picture = f'<span class="nothumb">{escape(why)}</span>'
        yield (
            f'<figure class="tile"><a class="img" href="{escape(_href(name))}" '
            f'target="_blank" rel="noopener">{picture}</a><figcaption><span class="k">{key}'
            f"{which}</span>{said}{cost if number == 1 else ''}</figcaption></figure>"
        )


def _href(path: str) -> str:
    """A relative URL for a file name costguard wrote (safe names; only `%`, `#`, `?` and
    spaces need quoting)."""
    return path.replace("%", "%25").replace("#", "%23").replace("?", "%3F").replace(" ", "%20")


# --- cost, spend, parts --------------------------------------------------------------------


def _cost(facts: Mapping[str, Any]) -> str:
    cost = facts["cost"]
    rehearsal = facts["run"]["rehearsal"]
    out = ['<section id="cost"><h2>Cost against the estimate</h2>']
    head = (
        "<tr><th>model</th><th>size</th><th>quality</th><th>requests</th><th>collected</th>"
        "<th>expected</th><th>max</th><th>"
        + ("would have cost" if rehearsal else "actual")
        + "</th><th>actual / expected</th></tr>"
    )
    rows = []
    for row in cost["by_group"]:
        amounts = [row["expected_usd"], row["max_usd"], row["actual_usd"]]
        shown = usd_together(*(Decimal(a) for a in amounts if a is not None))
        texts = iter(shown)
        cells = [next(texts) if a is not None else "n/a" for a in amounts]
        over = row["max_usd"] is not None and Decimal(row["actual_usd"]) > Decimal(row["max_usd"])
        rows.append(
            f"<tr{' class=over' if over else ''}><td>{escape(row['model'])}</td>"
            f"<td>{escape(row['size'])}</td><td>{escape(row['quality'] or '')}</td>"
            f'<td class="n">{row["requests"]:,}</td><td class="n">{row["collected"]:,}</td>'
            + "".join(f'<td class="n">{escape(c)}</td>' for c in cells)
            + f'<td class="n">{_ratio(row["actual_usd"], row["expected_usd"])}</td></tr>'
        )
    expected, maximum, actual = (
        Decimal(cost["estimate"]["expected_usd"]),
        Decimal(cost["estimate"]["max_usd"]),
        Decimal(cost["actual_usd"]),
    )
    total = usd_together(expected, maximum, actual)
    rows.append(
        f'<tr class="total"><td colspan="3">total</td><td class="n">'
        f'{facts["run"]["requests"]:,}</td><td class="n">{facts["collected"]:,}</td>'
        + "".join(f'<td class="n">{escape(t)}</td>' for t in total)
        + f'<td class="n">{_ratio(cost["actual_usd"], cost["estimate"]["expected_usd"])}</td></tr>'
    )
    out.append(f'<table class="data"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>')
    if not cost["by_group_estimated"]:
        out.append(
            '<p class="note">This run\'s journal predates per-group estimates: only the total '
            "estimate is known; groups show what was collected.</p>"
        )
    other = cost["other_mode"]
    if other["usd"] is not None:
        saving, at_other, paid = usd_together(
            Decimal(other["saving_usd"]), Decimal(other["usd"]), actual
        )
        if facts["run"]["mode"] == "batch":
            out.append(
                f"<p>The same usage in sync calls would have cost {escape(at_other)}: the Batch "
                f"API {'would have saved' if rehearsal else 'saved'} {escape(saving)}.</p>"
            )
        else:
            out.append(
                f"<p>These sync calls cost {escape(paid)}; in batch the same usage would have "
                f"cost {escape(at_other)}.</p>"
            )
    if facts["not_collected"]:
        out.append(
            f'<p class="note">{facts["not_collected"]:,} request(s) not collected yet: the '
            "actual cost covers what was collected.</p>"
        )
    if cost["calibration"]:
        cal = cost["calibration"]
        since = f" since {cal['since']}" if cal.get("since") else ""
        out.append(f"<p>Priced with a calibration from {cal['requests']:,} requests{since}.</p>")
    if cost["spread"]:
        out.append(_spread(cost["spread"]))
    out.append("</section>")
    return "\n".join(out)


def _ratio(actual: str, expected: str | None) -> str:
    if expected is None or not Decimal(expected):
        return ""
    return f"{Decimal(actual) / Decimal(expected) * 100:.0f}%"


def _spread(spread: list[Mapping[str, Any]]) -> str:
    rows = []
    for row in spread:
        amounts = usd_together(
            *(Decimal(row[k]) for k in ("min_usd", "median_usd", "p90_usd", "max_usd"))
        )
        peak = max(row["histogram"]) or 1
        bars = "".join(
            f'<i style="height:{max(round(n / peak * 100), 2 if n else 0)}%" title="{n:,}"></i>'
            for n in row["histogram"]
        )
        rows.append(
            f"<tr><td>{escape(row['model'])}</td><td>{escape(row['size'])}</td>"
            f'<td>{escape(row["quality"] or "")}</td><td class="n">{row["requests"]:,}</td>'
            + "".join(f'<td class="n">{escape(a)}</td>' for a in amounts)
            + f'<td><span class="hist" role="img" aria-label="distribution">{bars}</span></td>'
            "</tr>"
        )
    return (
        "<h3>Cost per image, where it varies</h3>"
        "<p>Images of one model, size and quality cost different amounts when the model "
        "thinks or reads input images: the spread over the ok requests (shown where the "
        "largest is more than 1% above the smallest).</p>"
        '<table class="data"><thead><tr><th>model</th><th>size</th><th>quality</th>'
        "<th>requests</th><th>min</th><th>median</th><th>p90</th><th>max</th>"
        f"<th>distribution</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _spend(facts: Mapping[str, Any], chart: str | None) -> str:
    spend = facts.get("spend") or {}
    out = ['<section id="spend"><h2>Spend over time</h2>']
    if spend.get("note"):
        out.append(f'<p class="note">{escape(spend["note"])}</p>')
    if chart:
        out.append(f'<figure class="chart">{chart}</figure>')
    out.append("</section>")
    return "\n".join(out)


def _parts(facts: Mapping[str, Any]) -> str:
    rows = []
    for part in facts["run"]["parts"]:
        counts = part["job_counts"] or {}
        done = counts.get("done")
        failed = counts.get("failed")
        cost = usd(Decimal(part["cost_usd"])) if part["cost_usd"] is not None else ""
        rows.append(
            f"<tr><td>{escape(part['id'])}</td><td>{escape(part['model'])}</td>"
            f"<td>{escape(part['job_id'] or '')}</td><td>{escape(part['state'])}</td>"
            f'<td class="n">{part["requests"]:,}</td>'
            f'<td class="n">{"" if done is None else f"{done:,}"}</td>'
            f'<td class="n">{"" if failed is None else f"{failed:,}"}</td>'
            f'<td class="n">{escape(cost)}</td><td>{escape(part["error"] or "")}</td></tr>'
        )
    return (
        '<section id="parts"><h2>Jobs</h2><table class="data"><thead><tr><th>part</th>'
        "<th>model</th><th>job</th><th>state</th><th>requests</th><th>done</th><th>failed</th>"
        f"<th>cost</th><th>error</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"{_quota_note(facts)}</section>"
    )


def _quota_note(facts: Mapping[str, Any]) -> str:
    """A line on the waits for the provider's quota, when there were any."""
    quota = facts.get("quota") or {}
    if not quota.get("waits"):
        return ""
    text = (
        f"{quota['waits']:,} submission(s) waited for the provider's batch quota, "
        f"{clock_text(quota['wait_s'])} in all (longest part {clock_text(quota['longest_s'])})"
    )
    if quota.get("waiting"):
        text += f"; {quota['waiting']:,} part(s) wait now"
    if quota.get("limits"):
        named = ", ".join(f"{m} {n:,} tokens" for m, n in sorted(quota["limits"].items()))
        text += f"; limits the provider named: {named}"
    return f'<p class="note" id="quota">{escape(text)}.</p>'


def _footer(facts: Mapping[str, Any], version: str) -> str:
    run = facts["run"]
    cards = ", ".join(run["rate_cards"])
    return (
        f"<footer>Made by costguard {escape(version)} at {escape(_moment(facts['generated']))}"
        f" · prices as of {escape(run['as_of'])} from rate cards {escape(cards)} · "
        f"output folder <code>{escape(run['out'])}</code></footer>"
    )


def _moment(text: str) -> str:
    """An ISO moment as `2026-11-26 05:24 UTC`."""
    return text[:16].replace("T", " ") + " UTC" if len(text) >= 16 else text


_STYLE = """
:root{--ink:#1f2328;--mute:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--ok:#1a7f37;--bad:#cf222e;
--warn:#9a6700;--blue:#0969da;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
color:var(--ink)}
body{margin:0;background:#fff}
header,main,footer,nav{padding:0 24px}
header{padding-top:16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}
h3{font-size:15px;margin:0;display:inline}h4{font-size:13px;margin:14px 0 8px;color:var(--mute)}
h3 span,h4 span{font-weight:400;color:var(--mute)}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--bg);padding:1px 4px;
border-radius:4px;word-break:break-all}
.meta{color:var(--mute);margin:0}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;color:#fff}
.pill.done{background:var(--ok)}.pill.busy{background:var(--warn)}
.rehearsal{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px}
.note{color:var(--mute)}
nav{position:sticky;top:0;background:#fffe;border-bottom:1px solid var(--line);display:flex;
flex-wrap:wrap;gap:8px 24px;align-items:center;padding-top:8px;padding-bottom:8px;z-index:2}
nav .links a{margin-right:14px;color:var(--blue);text-decoration:none}
.chip{display:inline-block;border:1px solid var(--line);border-radius:14px;padding:2px 10px;
margin-right:6px;color:var(--ink);text-decoration:none}
.chip.s-ok b{color:var(--ok)}.chip.s-refused b,.chip.s-failed b{color:var(--bad)}
.chip.s-expired b,.chip.s-cancelled b{color:var(--warn)}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-top:16px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:170px}
.card .t{color:var(--mute);font-size:12px}.card .v{font-size:22px;font-weight:600}
.card .s{color:var(--mute);font-size:12px}.card.warn .v{color:var(--bad)}
.callout{border-left:4px solid var(--warn);background:var(--bg);padding:4px 14px;
margin-top:16px}
.callout h2{margin-top:8px}
pre.cmd{background:#fff;border:1px solid var(--line);padding:8px;border-radius:6px;
overflow-x:auto;user-select:all}
.tools input{font:inherit;padding:4px 8px;border:1px solid var(--line);border-radius:6px;
width:260px}
details.status{margin:10px 0;border-top:1px solid var(--line);padding-top:6px}
summary{cursor:pointer}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(168px,1fr));gap:10px}
.tile{margin:0;border:1px solid var(--line);border-radius:6px;overflow:hidden;background:#fff;
content-visibility:auto;contain-intrinsic-size:auto 240px;display:flex;flex-direction:column}
.tile .img{display:flex;align-items:center;justify-content:center;height:168px;
background:repeating-conic-gradient(#eee 0 25%,#fff 0 50%) 0 0/16px 16px}
.tile img{width:100%;height:100%;object-fit:contain;display:block}
.tile .of{font-weight:400;color:var(--mute)}
.tile figcaption{padding:6px 8px;font-size:12px;display:flex;flex-direction:column;gap:2px}
.tile .k{font-weight:600;word-break:break-all}
.tile .p{color:var(--mute);display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;
overflow:hidden}
.tile .c{color:var(--mute);font-variant-numeric:tabular-nums}
.tile.bad .why{height:168px;box-sizing:border-box;padding:10px;background:#fff5f5;
overflow-y:auto;overflow-x:hidden;overflow-wrap:anywhere;font-size:12px}
.tile.bad .why b{color:var(--bad);text-transform:uppercase;font-size:11px}
.tile.bad .why p{margin:6px 0 0}
.nothumb{color:var(--mute);font-size:12px;padding:8px}
.tile[hidden],.sub[hidden]{display:none}
table.data{border-collapse:collapse;margin:6px 0}
table.data th,table.data td{border-bottom:1px solid var(--line);padding:4px 10px;text-align:left}
table.data th{font-weight:600;color:var(--mute);font-size:12px}
table.data td.n{text-align:right;font-variant-numeric:tabular-nums}
table.data tr.total td{font-weight:600;border-top:2px solid var(--ink)}
table.data tr.over td{color:var(--bad)}
.hist{display:inline-flex;align-items:flex-end;height:22px;gap:1px}
.hist i{display:inline-block;width:6px;background:var(--blue)}
figure.chart{margin:0;max-width:960px}figure.chart svg{width:100%;height:auto}
footer{color:var(--mute);font-size:12px;margin:32px 0 24px;border-top:1px solid var(--line);
padding-top:10px}
"""

_SCRIPT = """
(function(){
var find=document.getElementById('find'),found=document.getElementById('found');
if(!find)return;
var tiles=Array.prototype.slice.call(document.querySelectorAll('#sheet .tile'));
var subs=Array.prototype.slice.call(document.querySelectorAll('#sheet .sub'));
var texts=null,timer=0;
function apply(){
  var q=find.value.trim().toLowerCase(),shown=0;
  if(texts===null){texts=tiles.map(function(t){
    var k=t.querySelector('.k'),p=t.querySelector('.p');
    return ((k?k.textContent:'')+' '+(p?p.textContent:'')).toLowerCase();});}
  for(var i=0;i<tiles.length;i++){
    var hit=!q||texts[i].indexOf(q)>=0;tiles[i].hidden=!hit;if(hit)shown++;}
  subs.forEach(function(s){s.hidden=!s.querySelector('.tile:not([hidden])');});
  found.textContent=q?(shown+' of '+tiles.length+' match'):'';
}
find.addEventListener('input',function(){clearTimeout(timer);timer=setTimeout(apply,120);});
})();
"""
