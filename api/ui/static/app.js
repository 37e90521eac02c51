// pvsignal dashboard: the little that needs a script. Every page works without it.
"use strict";

// Alerts inbox: new alerts from the session's EventSource, prepended without a reload.
function liveAlerts(table) {
  const body = table.tBodies[0];
  const state = document.getElementById("live-state");
  const source = new EventSource(table.dataset.stream);
  source.addEventListener("open", () => { state.textContent = state.dataset.liveText; });
  source.addEventListener("error", () => { state.textContent = state.dataset.lostText; });
  source.addEventListener("alert", (event) => {
    const alert = JSON.parse(event.data);
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    const row = document.createElement("tr");
    row.dataset.testid = "alert-row";
    row.setAttribute("data-testid", "alert-row");
    row.dataset.productId = alert.product_id;
    row.dataset.pt = alert.pt;
    row.className = "fresh";
    const link = document.createElement("a");
    link.href = "/ui/signal?" + new URLSearchParams({scope: alert.scope, product_id: alert.product_id, pt: alert.pt});
    link.textContent = alert.pt;
    const changes = Object.entries(alert.changes || {}).map(([m, t]) => m.toUpperCase() + ": " + t).join(", ");
    const badge = document.createElement("span");
    badge.className = "status status-" + alert.transition;
    badge.textContent = alert.transition;
    const cells = [String(alert.alert_id), alert.at.slice(0, 16).replace("T", " "), alert.scope, alert.product_id, link, badge, changes];
    for (const value of cells) {
      const cell = document.createElement("td");
      if (typeof value === "string") cell.textContent = value; else cell.appendChild(value);
      row.appendChild(cell);
    }
    body.insertBefore(row, body.firstChild);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const alerts = document.querySelector("table[data-stream]");
  if (alerts && window.EventSource) liveAlerts(alerts);
});
