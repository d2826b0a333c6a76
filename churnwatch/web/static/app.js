"use strict";
// The retention team's page: a live alerts feed (polled every 2 s) and a subscriber view.
// Data is only ever inserted as text (textContent), never parsed as HTML.

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
let pollTimer = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "href") node.href = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

async function api(path, options) {
  const res = await fetch(path, Object.assign({credentials: "same-origin"}, options || {}));
  if (res.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  const body = await res.json();
  if (!res.ok) throw new Error(body.detail || body.error || res.statusText);
  return body;
}

function when(ms) { return new Date(ms).toISOString().replace("T", " ").slice(0, 16) + " UTC"; }
function day(ms) { return new Date(ms).toISOString().slice(0, 10); }
function sevBadge(sev) { return el("span", {class: "sev sev-" + sev, "data-severity": sev}, sev); }
function subscriberLink(id) {
  return el("a", {href: "#/subscriber/" + encodeURIComponent(id), class: "subscriber"}, id);
}
function reasonNodes(alert) {
  return alert.reasons.filter((r) => r.kind === "indicator").map((r) =>
    el("span", {class: "reason"}, r.indicator, " ", el("small", {}, r.description || "")))
    .concat(alert.reasons.filter((r) => r.kind === "model").slice(0, 1).map((r) =>
      el("span", {class: "reason"}, el("small", {}, "model: " + r.feature))));
}
function actionNodes(alert) {
  if (!alert.actions.length) return [el("span", {class: "muted"}, "none")];
  return alert.actions.map((a) => el("span", {class: "action"}, a.id, el("small", {class: "muted"}, " · " + a.channel)));
}
function owners(alert) { return [...new Set(alert.actions.map((a) => a.team))].join(", ") || "–"; }

// ---- feed ----
async function loadMeta() {
  const meta = await api("/api/v1/meta");
  for (const t of meta.teams) $("filter-team").append(el("option", {value: t}, t));
  for (const s of meta.severities) $("filter-severity").append(el("option", {value: s}, s));
}

async function refreshFeed() {
  const q = new URLSearchParams();
  if ($("filter-team").value) q.set("team", $("filter-team").value);
  if ($("filter-severity").value) q.set("severity", $("filter-severity").value);
  try {
    const body = await api("/api/v1/alerts?" + q.toString());
    const rows = body.alerts.map((a) => el("tr", {"data-alert-id": a.alert_id, class: "alert-row"},
      el("td", {}, when(a.ts)), el("td", {}, sevBadge(a.severity)),
      el("td", {}, subscriberLink(a.subscriber_id)), el("td", {}, a.segment),
      el("td", {}, a.score.toFixed(2)), el("td", {}, ...reasonNodes(a)),
      el("td", {}, ...actionNodes(a)), el("td", {class: "owner"}, owners(a))));
    $("alerts").replaceChildren(...rows);
    $("empty").hidden = rows.length > 0;
    $("status").textContent = "live · updated " + new Date().toLocaleTimeString();
  } catch (err) {
    $("status").textContent = "cannot load alerts: " + err.message;
  }
}

// ---- subscriber ----
function drawRisk(points) {
  const svg = $("risk-chart");
  const ns = "http://www.w3.org/2000/svg";
  const mk = (tag, attrs) => { const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); return n; };
  const W = Math.max(300, Math.round(svg.clientWidth) || 600), H = 200, L = 36, R = 10, T = 10, B = 24;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const nodes = [mk("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis"}),
                 mk("line", {x1: L, y1: T, x2: L, y2: H - B, class: "axis"})];
  for (const v of [0, 0.5, 1]) {
    const t = mk("text", {x: 4, y: H - B - v * (H - B - T) + 4}); t.textContent = v.toFixed(1); nodes.push(t);
  }
  $("risk-note").textContent = points.length ? points.length + " days, " + day(points[0].ts) +
    " → " + day(points[points.length - 1].ts) : "No scores recorded yet.";
  if (points.length) {
    const t0 = points[0].ts, t1 = Math.max(points[points.length - 1].ts, t0 + 1);
    const xy = points.map((p) => [L + (p.ts - t0) / (t1 - t0) * (W - L - R), H - B - p.score * (H - B - T)]);
    nodes.push(mk("polyline", {class: "line", points: xy.map((p) => p.join(",")).join(" ")}));
    for (const [x, y] of xy) nodes.push(mk("circle", {class: "dot", cx: x, cy: y, r: 3}));
  }
  svg.replaceChildren(...nodes);
}

function outcomeCell(subscriberId, alert) {
  const cell = el("td", {class: "outcome"});
  for (const result of ["accepted", "declined", "no_contact"]) {
    const button = el("button", {type: "button", "data-result": result}, result.replace("_", " "));
    button.addEventListener("click", async () => {
      try {
        await api("/api/v1/outcomes", {method: "POST", headers: {"Content-Type": "application/json"},
          body: JSON.stringify({subscriber_id: subscriberId, alert_id: alert.alert_id, result})});
        cell.replaceChildren(el("span", {class: "done", "data-testid": "outcome-done"}, "marked " + result.replace("_", " ")));
      } catch (err) {
        cell.append(el("span", {class: "error"}, " " + err.message));
      }
    });
    cell.append(button);
  }
  return cell;
}

async function showSubscriber(id) {
  $("feed-view").hidden = true;
  $("subscriber-view").hidden = false;
  $("sub-id").textContent = id;
  $("status").textContent = "subscriber view";
  let r;
  try { r = await api("/api/v1/subscribers/" + encodeURIComponent(id)); }
  catch (err) { $("sub-summary").replaceChildren(el("p", {class: "error"}, err.message)); return; }
  const stat = (label, value) => el("div", {}, label, el("b", {}, value));
  $("sub-summary").replaceChildren(
    stat("segment", r.segment || "–"), stat("risk score", r.score == null ? "–" : r.score.toFixed(2)),
    stat("severity now", r.severity || "none"), stat("rules that hold", (r.rules || []).join(", ") || "none"));
  drawRisk(r.risk_history || []);
  $("indicators").replaceChildren(...Object.entries(r.indicators).map(([name, on]) =>
    el("li", {class: on ? "on" : "off", "data-indicator": name}, (on ? "● " : "○ ") + name)));
  $("history").replaceChildren(...r.alerts.map((a) => el("tr", {"data-alert-id": a.alert_id},
    el("td", {}, when(a.ts)), el("td", {}, sevBadge(a.severity)), el("td", {}, a.rules.join(", ")),
    el("td", {}, ...actionNodes(a)), outcomeCell(r.subscriber_id, a))));
  const missing = new Set(r.missing_features || []);
  $("features").replaceChildren(...Object.entries(r.features).map(([k, v]) =>
    el("tr", {}, el("td", {}, k), el("td", {}, missing.has(k) ? "–" : String(Math.round(v * 1000) / 1000)))));
}

// ---- incrementality ledger ----
function pts(x) { return x == null ? "–" : (x >= 0 ? "+" : "") + (x * 100).toFixed(1); }
function share(k, n) { return n ? Math.round(100 * k / n) + " % of " + n : "–"; }
function money(x) { return x == null ? "–" : Math.round(x).toLocaleString("en"); }

async function refreshEffect() {
  let body;
  try { body = await api("/api/v1/effect?by=segment"); } catch (err) { return; }
  $("effect-window").textContent = String(body.window_days);
  $("effect").replaceChildren(...body.rows.map((r) => el("tr", {
    class: r.high != null && r.high < 0 ? "backfires" : (r.low != null && r.low > 0 ? "works" : ""),
    "data-action": r.action, "data-segment": r.segment},
    el("td", {}, r.action), el("td", {}, r.segment), el("td", {}, String(r.contacts)),
    el("td", {}, share(r.treated_retained, r.treated)),
    el("td", {}, share(r.control_retained, r.control)), el("td", {}, pts(r.difference)),
    el("td", {}, r.low == null ? "–" : "[" + pts(r.low) + ", " + pts(r.high) + "]"),
    el("td", {}, money(r.offer_cost)), el("td", {}, money(r.retained_value)))));
}

// ---- routing ----
function route() {
  clearInterval(pollTimer);
  const m = location.hash.match(/^#\/subscriber\/(.+)$/);
  if (m) { showSubscriber(decodeURIComponent(m[1])); return; }
  $("subscriber-view").hidden = true;
  $("feed-view").hidden = false;
  refreshFeed();
  refreshEffect();
  pollTimer = setInterval(() => { refreshFeed(); refreshEffect(); }, POLL_MS);
}

$("filter-team").addEventListener("change", refreshFeed);
$("filter-severity").addEventListener("change", refreshFeed);
$("lookup").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = $("lookup-id").value.trim();
  if (id) location.hash = "#/subscriber/" + encodeURIComponent(id);
});
$("logout").addEventListener("click", async () => {
  await fetch("/logout", {method: "POST", credentials: "same-origin"});
  location.href = "/login";
});
window.addEventListener("hashchange", route);
loadMeta().then(route, route);
