// The send console: plain JavaScript, no build step, nothing loaded from elsewhere.
// Every value the API returns is written with textContent or setAttribute, never parsed
// as HTML. The API key lives in this tab's sessionStorage and goes to this worker only.
"use strict";

(() => {
  const SESSION = "leadstream.console";
  const SVG_NS = "http://www.w3.org/2000/svg";

  // The summary's counts in the order of the steps (docs/contract.md, section 3.4).
  const DROPS = [
    ["optedOut", "Opted out"],
    ["droppedByAudienceFilter", "Audience filter"],
    ["droppedByEventFilter", "Event filters / conditions"],
    ["droppedByFrequencyCap", "Frequency cap"],
    ["droppedByQuietHours", "Quiet hours"],
    ["heldOut", "Held out"],
  ];
  // Where explain says a lead left a send, in the same order.
  const STEPS = [
    ["optedOut", "Opted out"],
    ["audienceFilter", "Audience filter"],
    ["eventFilter", "Event filters / conditions"],
    ["frequencyCap", "Frequency cap"],
    ["quietHours", "Quiet hours"],
    ["heldOut", "Held out"],
    ["recipient", "Recipient"],
  ];

  let session = null; // {org, key}

  // -- DOM helpers ---------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function number(n) {
    return Number(n).toLocaleString("en-US");
  }

  // -- the API -------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, body) {
      super(message);
      this.status = status;
      this.code = code;
      this.body = body;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + session.key, Accept: "application/json" };
    const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "unreachable", "the worker did not answer", null);
    }
    let doc = null;
    try {
      doc = await response.json();
    } catch (err) {
      doc = null;
    }
    if (!response.ok) {
      const error = doc && doc.error ? doc.error : {};
      const code = typeof error.code === "string" ? error.code : "http_" + response.status;
      const message = typeof error.message === "string" ? error.message : response.statusText;
      throw new ApiError(response.status, code, message, doc);
    }
    return doc;
  }

  const enc = encodeURIComponent;

  function sendsPath() {
    return "/api/v1/organizations/" + enc(session.org) + "/sends?limit=" + enc($("sends-limit").value);
  }

  function refusalText(err) {
    if (err.status === 401) return "Refused: this API key is not valid (or was revoked).";
    if (err.status === 403) return "Refused: this API key belongs to another organization.";
    return "Could not sign in: " + err.message;
  }

  // A refusal after sign-in (a key revoked meanwhile): back to the sign-in form, no data.
  function refusedLater(err) {
    if (err.status === 401 || err.status === 403) {
      signOut();
      showRefusal(refusalText(err));
      return true;
    }
    return false;
  }

  // -- sign-in -------------------------------------------------------------------------

  function showRefusal(text) {
    const p = $("signin-error");
    p.textContent = text;
    show(p, true);
  }

  function clearData() {
    $("sends-list").replaceChildren();
    $("sends-status").textContent = "";
    $("ex-sends").replaceChildren();
    $("preview-funnel").replaceChildren();
    $("preview-sample").tBodies[0].replaceChildren();
    $("preview-request").textContent = "";
    $("explain-raw").textContent = "";
    show($("preview-result"), false);
    show($("preview-error"), false);
    show($("explain-result"), false);
    show($("explain-error"), false);
  }

  function signOut() {
    session = null;
    sessionStorage.removeItem(SESSION);
    clearData();
    $("who-org").textContent = "";
    show($("who"), false);
    show($("app"), false);
    show($("signin"), true);
  }

  async function signIn(org, key) {
    session = { org, key };
    show($("signin-error"), false);
    let doc;
    try {
      doc = await api("GET", sendsPath());
    } catch (err) {
      signOut();
      showRefusal(refusalText(err));
      return;
    }
    sessionStorage.setItem(SESSION, JSON.stringify(session));
    $("signin-key").value = "";
    $("who-org").textContent = org;
    show($("who"), true);
    show($("signin"), false);
    show($("app"), true);
    renderSends(doc);
  }

  // -- the funnel chart ----------------------------------------------------------------

  // Bars from the audience down to the recipients: each step's bar spans the leads it
  // dropped, ending where the previous step left the audience (a waterfall).
  function funnel(counts, recipientCount, title) {
    const audience = counts.audience;
    const rows = [{ step: "audience", label: "Audience", from: 0, count: audience, kind: "total" }];
    let left = audience;
    for (const [step, label] of DROPS) {
      const count = counts[step] || 0;
      rows.push({ step, label, from: left - count, count, kind: "drop" });
      left -= count;
    }
    rows.push({ step: "recipients", label: "Recipients", from: 0, count: recipientCount, kind: "kept" });

    const labelWidth = 190;
    const barWidth = 420;
    const rowHeight = 26;
    const width = labelWidth + barWidth + 90;
    const height = rows.length * rowHeight + 6;
    const scale = (n) => (audience > 0 ? (Math.max(0, n) / audience) * barWidth : 0);

    const chart = svg("svg", {
      class: "funnel-chart",
      viewBox: "0 0 " + width + " " + height,
      width,
      height,
      role: "img",
      "aria-label": title,
    });
    rows.forEach((row, i) => {
      const y = i * rowHeight + 4;
      chart.append(svg("text", { x: 0, y: y + 15, class: "label" }, row.label));
      const x = labelWidth + scale(row.from);
      const w = Math.max(scale(row.count), row.count > 0 ? 1.5 : 0);
      const bar = svg("rect", {
        class: "bar bar-" + row.kind,
        x: x.toFixed(2),
        y,
        width: w.toFixed(2),
        height: rowHeight - 8,
        rx: 2,
        "data-step": row.step,
        "data-count": row.count,
      });
      bar.append(svg("title", {}, row.label + ": " + number(row.count)));
      chart.append(bar);
      const sign = row.kind === "drop" && row.count > 0 ? "\u2212" : "";
      chart.append(
        svg(
          "text",
          { x: (x + w + 6).toFixed(2), y: y + 15, class: "count count-" + row.kind, "data-step": row.step },
          sign + number(row.count),
        ),
      );
    });
    const figure = el("figure", { class: "funnel", "data-recipient-count": recipientCount }, chart);
    const late = counts.lateAudienceFilters || 0;
    figure.append(
      el(
        "figcaption",
        { class: "late", "data-step": "lateAudienceFilters", "data-count": late },
        "Late audience filters (ignored): " + number(late),
      ),
    );
    return figure;
  }

  // -- Sends ---------------------------------------------------------------------------

  async function loadSends() {
    $("sends-status").textContent = "Loading\u2026";
    try {
      renderSends(await api("GET", sendsPath()));
    } catch (err) {
      if (!refusedLater(err)) $("sends-status").textContent = "Could not list the sends: " + err.message;
    }
  }

  function renderSends(doc) {
    const list = $("sends-list");
    const sends = Array.isArray(doc.sends) ? doc.sends : [];
    list.replaceChildren();
    $("sends-status").textContent =
      sends.length === 0 ? "No sends yet for this organization." : sends.length + " most recent sends";
    const ids = $("ex-sends");
    ids.replaceChildren();
    for (const send of sends) {
      list.append(sendCard(send));
      ids.append(el("option", { value: send.sendId }));
    }
  }

  function sendCard(send) {
    const state = send.complete
      ? send.summarized
        ? "complete"
        : "complete, summary pending"
      : "in progress: " + send.partitionsDone + " of " + send.partitions + " partitions";
    const meta = el(
      "dl",
      { class: "meta" },
      el("dt", {}, "campaign"),
      el("dd", {}, send.campaignId),
      el("dt", {}, "scheduled for"),
      el("dd", {}, send.scheduledFor),
      el("dt", {}, "materialized at"),
      el("dd", {}, send.materializedAt),
      el("dt", {}, "state"),
      el("dd", { class: send.complete ? "ok" : "pending" }, state + (send.late ? " (late)" : "")),
    );
    const explainButton = el("button", { type: "button", class: "quiet" }, "Explain a lead\u2026");
    explainButton.addEventListener("click", () => {
      $("ex-send").value = send.sendId;
      selectTab("explain");
      $("ex-phone").focus();
    });
    const card = el(
      "article",
      { class: "card send", "data-send-id": send.sendId },
      el(
        "header",
        {},
        el("h3", {}, send.sendId),
        el("span", { class: "recipients" }, number(send.recipientCount) + " recipients"),
        explainButton,
      ),
      meta,
      funnel(send.counts, send.recipientCount, "Funnel of send " + send.sendId),
    );
    if (send.variants) card.append(variantsLine(send.variants));
    return card;
  }

  function variantsLine(variants) {
    const parts = Object.entries(variants).map(([name, count]) => name + ": " + number(count));
    return el("p", { class: "muted variants" }, "Variants \u2014 " + parts.join(", "));
  }

  // -- Preview -------------------------------------------------------------------------

  class FormError extends Error {}

  function json(id, what) {
    const text = $(id).value.trim();
    if (!text) return undefined;
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new FormError(what + " is not JSON: " + err.message);
    }
  }

  function integer(id) {
    const text = $(id).value.trim();
    return text === "" ? undefined : Number(text);
  }

  // The body of POST /api/v1/sends/preview, from the form.
  function previewBody() {
    const body = { organizationId: session.org, campaignId: $("pv-campaign").value.trim() };
    const scheduled = $("pv-scheduled").value.trim();
    if (scheduled) body.scheduledFor = scheduled;
    const kind = $("pv-filter-kind").value;
    const filters = kind === "none" ? undefined : json("pv-filters", "The filters");
    if (filters !== undefined) {
      if (kind === "eventFilters") body.eventFilters = Array.isArray(filters) ? filters : [filters];
      else body.conditions = filters;
    }
    const audienceFilter = json("pv-audience-filter", "The audience filter");
    if (audienceFilter !== undefined) body.audienceFilter = audienceFilter;
    const maxSends = integer("pv-cap-sends");
    const withinHours = integer("pv-cap-hours");
    if (maxSends !== undefined || withinHours !== undefined) body.frequencyCap = { maxSends, withinHours };
    const quiet = $("pv-quiet").value;
    if (quiet === "us-tcpa") body.quietHours = { policy: "us-tcpa" };
    if (quiet === "window") {
      body.quietHours = { start: $("pv-quiet-start").value.trim(), end: $("pv-quiet-end").value.trim() };
      const zone = $("pv-quiet-zone").value.trim();
      if (zone) body.quietHours.timeZone = zone;
    }
    const holdout = integer("pv-holdout");
    if (holdout !== undefined) body.holdout = { percent: holdout };
    const splits = json("pv-splits", "The splits");
    if (splits !== undefined) body.splits = splits;
    const sample = integer("pv-sample");
    body.sample = sample === undefined ? 0 : sample;
    return body;
  }

  async function preview(event) {
    event.preventDefault();
    const error = $("preview-error");
    show(error, false);
    let body;
    try {
      body = previewBody();
    } catch (err) {
      error.textContent = err.message;
      show(error, true);
      return;
    }
    $("pv-submit").disabled = true;
    try {
      renderPreview(body, await api("POST", "/api/v1/sends/preview", body));
    } catch (err) {
      if (refusedLater(err)) return;
      show($("preview-result"), false);
      const field = err.body && err.body.error && err.body.error.field;
      error.textContent = "Refused (" + err.code + "): " + err.message + (field ? " [" + field + "]" : "");
      show(error, true);
    } finally {
      $("pv-submit").disabled = false;
    }
  }

  function renderPreview(body, answer) {
    $("preview-request").textContent = JSON.stringify(body, null, 2);
    $("preview-recipients").textContent = number(answer.recipientCount);
    $("preview-recipients").setAttribute("data-count", answer.recipientCount);
    $("preview-when").textContent = "if materialized for " + answer.scheduledFor;
    $("preview-funnel").replaceChildren(funnel(answer.counts, answer.recipientCount, "Funnel of the preview"));
    $("preview-variants").textContent = answer.variants
      ? "Variants \u2014 " +
        Object.entries(answer.variants)
          .map(([name, count]) => name + ": " + number(count))
          .join(", ")
      : "";
    const rows = (answer.sample || []).map((r) =>
      el(
        "tr",
        { "data-phone": r.phoneE164, "data-external-id": r.externalId, "data-variant": r.variant },
        el("td", {}, r.phoneE164),
        el("td", { class: r.externalId == null ? "none" : null }, r.externalId == null ? "\u2014" : r.externalId),
        el("td", { class: r.variant == null ? "none" : null }, r.variant == null ? "\u2014" : r.variant),
      ),
    );
    $("preview-sample").tBodies[0].replaceChildren(...rows);
    show($("preview-result"), true);
  }

  // -- Explain -------------------------------------------------------------------------

  async function explain(event) {
    event.preventDefault();
    const error = $("explain-error");
    show(error, false);
    const send = $("ex-send").value.trim();
    const phone = $("ex-phone").value.trim();
    const path = "/api/v1/sends/" + enc(session.org) + "/" + enc(send) + "/leads/" + enc(phone);
    $("ex-submit").disabled = true;
    try {
      renderExplain(await api("GET", path));
    } catch (err) {
      if (refusedLater(err)) return;
      show($("explain-result"), false);
      let text = "Refused (" + err.code + "): " + err.message;
      if (err.status === 421 && err.body && typeof err.body.owner === "string") {
        text += ". The worker at " + err.body.owner + " holds this lead: open its /console.";
      }
      error.textContent = text;
      show(error, true);
    } finally {
      $("ex-submit").disabled = false;
    }
  }

  function stepLabel(step) {
    if (step === "notInAudience") return "Not in the audience";
    const found = STEPS.find(([name]) => name === step);
    return found ? found[1] : step;
  }

  function stepPath(step) {
    const items = [el("li", { "data-step": "audience", class: step === "notInAudience" ? "current out" : "passed" }, "Audience")];
    if (step === "notInAudience") return items;
    let reached = false;
    for (const [name, label] of STEPS) {
      let cls = "passed";
      if (name === step) {
        cls = name === "recipient" ? "current sent" : "current out";
        reached = true;
      } else if (reached) {
        cls = "after";
      }
      items.push(el("li", { "data-step": name, class: cls }, label));
    }
    return items;
  }

  function factValue(value) {
    if (value === null) return el("span", { class: "none" }, "null");
    if (typeof value === "object") return el("pre", { class: "json" }, JSON.stringify(value, null, 2));
    return String(value);
  }

  function facts(table, detail) {
    const rows = [];
    for (const [key, value] of Object.entries(detail || {})) {
      if (key === "message") continue;
      rows.push(el("tr", { "data-key": key }, el("th", {}, key), el("td", {}, factValue(value))));
    }
    table.tBodies[0].replaceChildren(...rows);
  }

  function renderExplain(answer) {
    const result = $("explain-result");
    result.setAttribute("data-step", answer.step);
    result.setAttribute("data-sent", String(answer.sent));
    $("explain-verdict").textContent = answer.sent ? "Messaged by send " + answer.sendId : "Not messaged by send " + answer.sendId;
    $("explain-step").textContent =
      (answer.sent ? "recipient" : "left at: " + stepLabel(answer.step)) +
      " \u00b7 scheduled for " + answer.scheduledFor + " \u00b7 materialized at " + answer.materializedAt;
    $("explain-steps").replaceChildren(...stepPath(answer.step));
    const detail = answer.detail || {};
    $("explain-message").textContent = typeof detail.message === "string" ? detail.message : "";
    facts($("explain-detail"), detail);
    const now = $("explain-now");
    if (answer.consistent === false && answer.now) {
      $("explain-now-step").textContent = "Today: " + stepLabel(answer.now.step);
      facts($("explain-now-detail"), answer.now.detail);
      show(now, true);
    } else {
      show(now, false);
    }
    $("explain-raw").textContent = JSON.stringify(answer, null, 2);
    show(result, true);
  }

  // -- tabs and start ------------------------------------------------------------------

  function selectTab(name) {
    for (const tab of document.querySelectorAll(".tab")) {
      const selected = tab.getAttribute("data-tab") === name;
      tab.setAttribute("aria-selected", String(selected));
      show($("panel-" + tab.getAttribute("data-tab")), selected);
    }
    if (name === "sends" && session) loadSends();
  }

  function start() {
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      signIn($("signin-org").value.trim(), $("signin-key").value.trim());
    });
    $("sign-out").addEventListener("click", signOut);
    $("sends-refresh").addEventListener("click", loadSends);
    $("sends-limit").addEventListener("change", loadSends);
    $("preview-form").addEventListener("submit", preview);
    $("explain-form").addEventListener("submit", explain);
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => selectTab(tab.getAttribute("data-tab")));
    }
    let saved = null;
    try {
      saved = JSON.parse(sessionStorage.getItem(SESSION) || "null");
    } catch (err) {
      saved = null;
    }
    if (saved && typeof saved.org === "string" && typeof saved.key === "string") {
      signIn(saved.org, saved.key);
    }
    document.body.setAttribute("data-console", "ready");
  }

  start();
})();
