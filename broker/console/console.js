// Ferry's web console: live figures from GET /v1/stats/stream, actions through the HTTP API.
//
// Every figure comes from the broker. Rates are the change of the broker's own counters
// (published_total, acked_total) between two events, over the broker's clock (at_ms).
// Every request carries the token the user typed; an answer that is not 2xx is shown as the
// broker's error (401: unknown token, 403: a right the token lacks), never as a blank page.

const HISTORY = 120; // points a chart keeps: two minutes at one event a second
const RECONNECT_MS = 2000; // after the stream ended (the broker restarted or drained)
const PAGE = 50; // messages or dead letters in one page of the panel
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem("ferry-token") ?? "";
let stream = null; // AbortController of the running stats stream
const cards = new Map(); // queue name -> QueueCard
let laidOut = null; // the queue names the page shows, in order

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") node.addEventListener("click", v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function authHeaders() {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

class ApiError extends Error {}

async function apiError(resp) {
  let detail = resp.statusText;
  try {
    const doc = await resp.json();
    detail = `${doc.error.code}: ${doc.error.message}`;
  } catch {
    // not the broker's error body: keep the status text
  }
  const hint = { 401: " Check the token.", 403: " This token lacks the right for it." };
  return new ApiError(`${resp.status} ${detail}.${hint[resp.status] ?? ""}`);
}

async function api(method, path, body) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) throw await apiError(resp);
  return resp.status === 204 ? null : resp.json();
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message ?? "";
}

function showOutcome(message) {
  $("outcome").hidden = false;
  $("outcome").textContent = message;
}

// An action's outcome, or its error, in the page.
async function act(what, fn) {
  try {
    showOutcome(await fn());
    showError(null);
  } catch (e) {
    showError(`${what} failed: ${e.message}`);
  }
}

// --- the stats stream ------------------------------------------------------------------

// Server-Sent Events read with fetch (EventSource cannot send the Authorization header).
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        const colon = line.indexOf(":");
        if (colon === 0) continue; // a comment (keepalive)
        const field = colon < 0 ? line : line.slice(0, colon);
        const v = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") type = v;
        else if (field === "data") data.push(v);
      }
      if (data.length) yield { type, data: data.join("\n") };
    }
  }
}

function setStatus(text) {
  $("status").textContent = text;
}

async function connect() {
  stream?.abort();
  const ctl = new AbortController();
  stream = ctl;
  setStatus("Connecting…");
  try {
    const resp = await fetch("/v1/stats/stream", { headers: authHeaders(), signal: ctl.signal });
    if (!resp.ok) {
      const e = await apiError(resp);
      showError(`Cannot read the broker's figures: ${e.message}`);
      setStatus("Not connected.");
      clearQueues();
      return; // a refused token is not retried: the user types another
    }
    showError(null);
    for await (const ev of sseEvents(resp.body)) {
      if (ev.type === "stats") render(JSON.parse(ev.data));
    }
  } catch (e) {
    if (ctl.signal.aborted) return;
    showError(`Lost the broker's figures: ${e.message}`);
  }
  if (stream !== ctl) return;
  setStatus("The figures stream ended; reconnecting…");
  setTimeout(() => { if (stream === ctl) connect(); }, RECONNECT_MS);
}

function clearQueues() {
  for (const card of cards.values()) card.remove();
  cards.clear();
  laidOut = null;
  $("queues").replaceChildren();
}

function render(ev) {
  const seen = new Set();
  for (const q of ev.queues) {
    seen.add(q.queue);
    let card = cards.get(q.queue);
    if (!card) {
      card = new QueueCard(q.queue);
      cards.set(q.queue, card);
    }
    card.update(q, ev.at_ms);
  }
  for (const [name, card] of cards) {
    if (!seen.has(name)) {
      card.remove();
      cards.delete(name);
    }
  }
  // Queues by name, as the broker lists them; the page is laid out again only when the
  // set of queues changed (moving nodes every second would disturb a click under way).
  const names = [...cards.keys()].sort();
  if (names.join("\n") !== laidOut) {
    laidOut = names.join("\n");
    $("queues").replaceChildren(...names.map((n) => cards.get(n).root));
    if (!names.length) $("queues").append(el("p", { class: "empty", text: "No queues yet." }));
  }
  const when = new Date(ev.at_ms).toLocaleTimeString();
  setStatus(`Connected: ${ev.queues.length} queue(s), figures of ${when}.`);
}

// --- charts ----------------------------------------------------------------------------

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf"];

// A live line chart (uPlot) of named series over the broker's clock.
class Chart {
  constructor(parent, title, labels) {
    this.labels = labels;
    this.data = [[], ...labels.map(() => [])];
    this.box = el("div", { class: "chart" }, el("h3", { text: title }));
    parent.append(this.box);
    this.plot = new uPlot({
      width: 440, height: 160,
      scales: { x: { time: true } },
      legend: { live: false }, // the series' names only: the table holds the figures
      series: [{}, ...labels.map((label, i) => ({
        label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
      }))],
    }, this.data, this.box);
  }

  push(atMs, values) {
    this.data[0].push(atMs / 1000);
    values.forEach((v, i) => this.data[i + 1].push(v));
    if (this.data[0].length > HISTORY) for (const s of this.data) s.shift();
    this.plot.setData(this.data);
  }

  remove() {
    this.plot.destroy();
    this.box.remove();
  }
}

function rate(before, now, dtMs) {
  if (before === undefined || dtMs <= 0 || now < before) return null; // no figure yet, or a reset
  return ((now - before) * 1000) / dtMs;
}

const fmtRate = (r) => (r === null ? "–" : `${r.toFixed(1)}/s`);

// --- one queue -------------------------------------------------------------------------

const GROUP_FIGURES = [
  ["depth", "depth"], ["in_flight", "in flight"], ["delayed", "delayed"], ["dead", "dead"],
  ["lag", "lag"], ["oldest", "oldest ready"], ["consumers", "consumers"],
  ["acked_total", "acked"], ["ack_rate", "ack rate"], ["filtered_total", "filtered"],
];

const fmtAge = (ms) => (ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`);

class QueueCard {
  constructor(name) {
    this.name = name;
    this.groups = new Map(); // group name -> {row, cells, chart}
    this.last = null; // {at, published, acked: Map}
    this.figures = el("span", { class: "figures" });
    this.tbody = el("tbody");
    this.charts = el("div", { class: "charts" });
    this.rates = null;
    this.root = el("section", { class: "queue", "data-queue": name },
      el("div", { class: "queue-head" },
        el("h2", { text: name }), this.figures,
        el("button", { type: "button", text: "Browse messages", onclick: () => browse(name) }),
        el("button", {
          type: "button", text: "Purge queue",
          onclick: () => purge(name, null),
        })),
      el("table", {}, el("thead", {}, el("tr", {},
        el("th", { text: "group" }),
        ...GROUP_FIGURES.map(([, label]) => el("th", { text: label })),
        el("th", { text: "" }))), this.tbody),
      this.charts);
  }

  update(q, at) {
    const dt = this.last ? at - this.last.at : 0;
    const publishRate = rate(this.last?.published, q.published_total, dt);
    this.figures.textContent = `${q.messages} stored · ${q.published_total} published · `
      + `${fmtRate(publishRate)} published`;
    const names = q.groups.map((g) => g.group).join(",");
    if (this.rates === null || this.rates.names !== names) this.rebuildRates(q, names);
    const acked = new Map();
    const ackRates = [];
    for (const g of q.groups) {
      acked.set(g.group, g.acked_total);
      const r = rate(this.last?.acked.get(g.group), g.acked_total, dt);
      ackRates.push(r);
      this.updateGroup(g, r, at);
    }
    for (const [gname, row] of this.groups) {
      if (!acked.has(gname)) {
        row.row.remove();
        row.chart.remove();
        this.groups.delete(gname);
      }
    }
    this.rates.chart.push(at, [publishRate, ...ackRates]);
    this.last = { at, published: q.published_total, acked };
  }

  rebuildRates(q, names) {
    this.rates?.chart.remove();
    const chart = new Chart(this.charts, `${this.name}: rates (messages/s)`,
      ["published", ...q.groups.map((g) => `acked by ${g.group}`)]);
    this.charts.prepend(chart.box);
    this.rates = { names, chart };
  }

  updateGroup(g, ackRate, at) {
    let row = this.groups.get(g.group);
    if (!row) {
      const cells = Object.fromEntries(GROUP_FIGURES.map(([k]) => [k, el("td", { "data-figure": k })]));
      const tr = el("tr", { "data-group": g.group }, el("th", { text: g.group }),
        ...Object.values(cells),
        el("td", {},
          el("button", { type: "button", text: "Dead letters",
            onclick: () => deadLetters(this.name, g.group) }),
          el("button", { type: "button", text: "Purge group",
            onclick: () => purge(this.name, g.group) })));
      this.tbody.append(tr);
      const chart = new Chart(this.charts, `${this.name} / ${g.group}`,
        ["depth", "in flight", "lag", "dead", "consumers"]);
      row = { row: tr, cells, chart };
      this.groups.set(g.group, row);
    }
    const values = {
      ...g, consumers: g.consumers.length, ack_rate: fmtRate(ackRate),
      oldest: g.depth ? fmtAge(g.oldest_ready_age_ms) : "–",
    };
    for (const [k] of GROUP_FIGURES) row.cells[k].textContent = String(values[k]);
    // Who the consumers are: their names, leases and when the broker last heard of them.
    row.cells.consumers.title = g.consumers.map((c) => `${c.name}: ${c.in_flight} in flight, `
      + `seen ${fmtAge(Math.max(0, at - c.last_seen_ms))} ago`).join("\n");
    row.chart.push(at, [g.depth, g.in_flight, g.lag, g.dead, g.consumers.length]);
  }

  remove() {
    this.rates?.chart.remove();
    for (const row of this.groups.values()) row.chart.remove();
    this.root.remove();
  }
}

// --- actions ---------------------------------------------------------------------------

const path = (...parts) => parts.map(encodeURIComponent).join("/");

function purge(queue, group) {
  const what = group ? `group ${group} of ${queue}` : `queue ${queue}`;
  if (!confirm(`Purge the ready messages of ${what}? (in flight, delayed and dead stay)`)) return;
  const url = group ? `/v1/queues/${path(queue, "groups", group)}/purge`
    : `/v1/queues/${path(queue)}/purge`;
  act(`Purging ${what}`, async () => {
    const r = await api("POST", url);
    return `Purged ${r.purged} message(s) from ${what}.`;
  });
}

// The one panel under the queues: dead letters of a group, or a queue's messages. Each
// load takes a ticket: the answer of a load that a newer one (another panel, a reload)
// overtook is dropped.
let ticket = 0;

function openPanel(title, columns, load) {
  $("panel").hidden = false;
  $("panel").scrollIntoView({ block: "nearest" });
  $("panel-title").textContent = title;
  $("panel-table").tHead.replaceChildren(el("tr", {}, ...columns.map((c) => el("th", { text: c }))));
  const body = $("panel-table").tBodies[0];
  body.replaceChildren();
  let cursor = null;
  const more = async (fresh) => {
    const mine = fresh ? ++ticket : ticket;
    try {
      const page = await load(fresh ? null : cursor);
      if (mine !== ticket) return;
      if (fresh) body.replaceChildren();
      body.querySelector("tr.none")?.remove();
      body.append(...page.rows);
      if (!body.rows.length) {
        body.append(el("tr", { class: "none" },
          el("td", { colspan: columns.length, class: "empty", text: "None." })));
      }
      cursor = page.next;
      $("panel-more").hidden = cursor === null;
    } catch (e) {
      if (mine === ticket) showError(`${title}: ${e.message}`);
    }
  };
  $("panel-more").onclick = () => more(false);
  more(true);
  return () => more(true);
}

const bodyText = (body) => JSON.stringify(body);

function deadLetters(queue, group) {
  const base = `/v1/queues/${path(queue, "groups", group)}/dead`;
  const redrive = (ids, what) => act(`Redriving ${what}`, async () => {
    const r = await api("POST", `${base}/redrive`, ids ? { ids } : {});
    reload();
    return `Redrove ${r.redriven} dead letter(s) of ${queue} / ${group}.`;
  });
  $("panel-actions").replaceChildren(el("button", {
    type: "button", text: "Redrive all", onclick: () => redrive(null, "every dead letter"),
  }));
  const reload = openPanel(`Dead letters of ${queue} / ${group}`,
    ["id", "reason", "deliveries", "dead at", "body", ""], async (cursor) => {
      const q = new URLSearchParams({ limit: PAGE });
      if (cursor) q.set("cursor", cursor);
      const page = await api("GET", `${base}?${q}`);
      return {
        next: page.next_cursor,
        rows: page.messages.map((m) => el("tr", { "data-id": m.id },
          el("td", { text: m.id }), el("td", { text: m.reason }),
          el("td", { text: String(m.delivery_count) }),
          el("td", { text: new Date(m.dead_at_ms).toLocaleString() }),
          el("td", { class: "body", text: bodyText(m.body) }),
          el("td", {}, el("button", {
            type: "button", text: "Redrive", onclick: () => redrive([m.id], `message ${m.id}`),
          })))),
      };
    });
}

const STATES = ["ready", "in_flight", "delayed", "dead", "acked"]; // MessageGroupState

// A queue's stored messages (a peek: nothing is leased), optionally those a group has not
// acked, in one state of that group.
function browse(queue) {
  const groups = [...(cards.get(queue)?.groups.keys() ?? [])];
  const group = el("select", { id: "browse-group", "aria-label": "group" },
    el("option", { value: "", text: "every group" }),
    ...groups.map((g) => el("option", { value: g, text: `not acked by ${g}` })));
  const state = el("select", { id: "browse-state", "aria-label": "state", disabled: "" },
    el("option", { value: "", text: "any state" }),
    ...STATES.map((s) => el("option", { value: s, text: s.replace("_", " ") })));
  group.addEventListener("change", () => {
    state.disabled = !group.value; // a state is a group's
    if (!group.value) state.value = "";
    reload();
  });
  state.addEventListener("change", () => reload());
  $("panel-actions").replaceChildren(group, state);
  const reload = openPanel(`Messages in ${queue}`,
    ["id", "key", "priority", "groups", "body", ""], async (cursor) => {
      const q = new URLSearchParams({ limit: PAGE });
      if (cursor) q.set("cursor", cursor);
      if (group.value) q.set("group", group.value);
      if (state.value) q.set("state", state.value);
      const page = await api("GET", `/v1/queues/${path(queue)}/messages?${q}`);
      return {
        next: page.next_cursor,
        rows: page.messages.map((m) => el("tr", { "data-id": m.id },
          el("td", { text: m.id }), el("td", { text: m.key ?? "" }),
          el("td", { text: String(m.priority) }),
          el("td", { text: m.groups.map((g) => `${g.group}: ${g.state}`).join(", ") }),
          el("td", { class: "body", text: bodyText(m.body) }),
          el("td", {}, el("button", {
            type: "button", text: "Cancel",
            onclick: () => act(`Cancelling message ${m.id}`, async () => {
              await api("DELETE", `/v1/queues/${path(queue, "messages", m.id)}`);
              reload();
              return `Cancelled message ${m.id} of ${queue}.`;
            }),
          })))),
      };
    });
}

// --- start -----------------------------------------------------------------------------

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("ferry-token", token);
  clearQueues();
  connect();
});
$("panel-close").addEventListener("click", () => {
  ticket++; // a load under way shows nothing now
  $("panel").hidden = true;
});
$("token").value = token;
if (token) connect();
