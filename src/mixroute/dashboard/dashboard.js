// The mixroute dashboard: polls /dashboard/data on this origin and fills the page.
// Values go in with textContent only, so names from the config cannot inject markup.
"use strict";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);

function usd(x) {
  const v = Number(x) || 0;
  return "$" + (v < 1 ? v.toFixed(6) : v.toFixed(2));
}
function pct(x) { return ((Number(x) || 0) * 100).toFixed(1) + "%"; }
function num(x) { return x === null || x === undefined ? "–" : String(x); }

function setValue(id, value, text) {
  const el = $(id);
  el.dataset.value = String(value);
  el.textContent = text;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
}

function fillRows(tableId, rows, render) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    render(tr, r);
    body.appendChild(tr);
  }
}

function bars(id, entries) {
  const box = $(id);
  box.replaceChildren();
  const total = entries.reduce((s, [, n]) => s + n, 0) || 1;
  for (const [name, n, extra] of entries) {
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.name = name;
    row.dataset.count = String(n);
    const label = document.createElement("span");
    label.textContent = name;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = ((100 * n) / total).toFixed(1) + "%";
    track.appendChild(fill);
    const count = document.createElement("span");
    count.className = "n";
    count.textContent = n + (extra ? " · " + extra : "");
    count.title = pct(n / total);
    row.append(label, track, count);
    box.appendChild(row);
  }
}

function render(d) {
  const t = d.totals, w = d.window;
  setValue("requests", t.requests, String(t.requests));
  $("rate").textContent = w.rate_rps.toFixed(2);
  $("window").textContent = String(w.seconds);
  $("p50").textContent = num(w.p50_ms);
  $("p95").textContent = num(w.p95_ms);
  $("error-rate").textContent = pct(w.error_rate);
  setValue("errors", t.errors, String(t.errors));
  $("fallback-rate").textContent = pct(w.fallback_rate);
  setValue("fallbacks", t.fallbacks, String(t.fallbacks));
  setValue("cost", t.cost_usd, usd(t.cost_usd));
  setValue("baseline", t.baseline_cost_usd, usd(t.baseline_cost_usd));
  $("baseline-model").textContent = d.baseline_model;
  setValue("saving", t.saving_usd, usd(t.saving_usd));
  $("saving-share").textContent = pct(t.saving_share);
  $("uptime").textContent = Math.round(d.uptime_s) + " s";
  $("updated").textContent = new Date(d.generated_at * 1000).toLocaleTimeString();

  bars("by-route", Object.entries(d.by_route));
  bars("by-model", Object.entries(d.by_model).map(
    ([m, v]) => [m, v.requests, usd(v.cost_usd)]));

  fillRows("upstreams", d.upstreams, (tr, u) => {
    cell(tr, u.model);
    cell(tr, u.state.replace("_", " "), "state-" + u.state);
  });
  fillRows("recent", d.recent, (tr, r) => {
    cell(tr, new Date(r.ts * 1000).toLocaleTimeString());
    cell(tr, r.route || "–");
    cell(tr, r.model || "–");
    cell(tr, r.rule || "–");
    cell(tr, r.confidence === null ? "–" : r.confidence.toFixed(2));
    cell(tr, r.models_tried || "–");
    cell(tr, String(r.status) + (r.cached ? " (cache)" : ""),
      r.status >= 400 ? "status-err" : "");
    cell(tr, String(r.latency_ms));
    cell(tr, r.cost_usd.toFixed(6));
  });

  const arms = [];
  for (const [test, s] of Object.entries(d.ab || {})) {
    for (const [arm, a] of Object.entries(s.arms || {})) {
      arms.push({ test: test + (s.halted ? " (halted)" : ""), arm, ...a });
    }
  }
  fillRows("ab", arms, (tr, a) => {
    cell(tr, a.test); cell(tr, a.arm); cell(tr, String(a.n));
    cell(tr, pct(a.error_rate)); cell(tr, a.latency_ms.toFixed(0));
    cell(tr, a.cost_usd.toFixed(6));
  });
  $("ab-none").hidden = arms.length > 0;
  const budgets = Object.entries(d.budgets || {});
  fillRows("budgets", budgets, (tr, [name, left]) => {
    cell(tr, name); cell(tr, usd(left));
  });
  $("budgets-none").hidden = budgets.length > 0;
}

async function poll() {
  const badge = $("status");
  try {
    const resp = await fetch("/dashboard/data", { cache: "no-store" });
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    render(await resp.json());
    badge.textContent = "live";
    badge.className = "badge ok";
    document.body.dataset.loaded = "1";
  } catch (err) {
    badge.textContent = "offline";
    badge.className = "badge down";
  }
}

poll();
setInterval(poll, POLL_MS);
