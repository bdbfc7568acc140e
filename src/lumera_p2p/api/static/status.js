// The status page's script: polls the node's API and drives the put/get form. No framework,
// no build step. The API token (when the node asks for one) comes from "#token=…" in the
// address or the form, and stays in this tab's sessionStorage.
"use strict";

const REFRESH_MS = 3000;
const $ = (id) => document.getElementById(id);

function token() {
  const match = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("lumera-p2p-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("lumera-p2p-token") || "";
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const secret = token();
  if (secret) headers.set("Authorization", "Bearer " + secret);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) $("token-form").hidden = false;
  if (!response.ok) {
    let reason = response.statusText;
    try { reason = (await response.json()).error || reason; } catch (e) { /* not JSON */ }
    throw new Error(`${response.status}: ${reason}`);
  }
  return response;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function duration(seconds) {
  const s = Math.floor(seconds);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h`;
}

function text(id, value) { $(id).textContent = String(value); }

function cell(row, value) {
  const td = document.createElement("td");
  td.textContent = value;
  row.appendChild(td);
}

function showStatus(s) {
  text("address", s.address);
  text("version", s.version);
  text("p2p-listen", s.p2p_listen);
  text("uptime", duration(s.uptime_seconds));
  const ready = $("ready");
  ready.textContent = s.ready ? "ready" : "not ready";
  ready.className = "badge " + (s.ready ? "ok" : "bad");
  text("banned", s.banned);
  text("registry", s.registry_supernodes);
  const st = s.storage;
  text("records", st.records);
  text("value-bytes", bytes(st.value_bytes));
  text("db-bytes", bytes(st.db_file_bytes));
  text("max-bytes", st.max_storage_bytes ? bytes(st.max_storage_bytes) : "none");
  text("disk-free", bytes(st.disk_free_bytes));
  text("disabled", st.disabled_keys);
  text("repair-pending", s.repair.pending_keys);
  text("repair-dropped", s.repair.dropped_keys);
  text("error-count", s.recent_errors.length);
  const list = $("errors");
  list.replaceChildren();
  for (const e of s.recent_errors) {
    const item = document.createElement("li");
    item.className = e.level;
    item.textContent =
      `${new Date(e.time * 1000).toLocaleTimeString()} ${e.level} ${e.logger}: ${e.message}`;
    list.appendChild(item);
  }
}

function showPeers(p) {
  text("peer-count", p.count);
  const body = $("peers");
  body.replaceChildren();
  for (const peer of p.peers) {
    const row = document.createElement("tr");
    row.dataset.address = peer.address;
    cell(row, peer.address);
    cell(row, `${peer.ip}:${peer.port}`);
    cell(row, peer.version || "–");
    cell(row, peer.banned ? "banned" : "ok");
    body.appendChild(row);
  }
}

async function refresh() {
  try {
    const [status, peers] = await Promise.all([
      api("/api/v1/status").then((r) => r.json()),
      api("/api/v1/peers").then((r) => r.json()),
    ]);
    showStatus(status);
    showPeers(peers);
    $("problem").hidden = true;
  } catch (error) {
    $("problem").textContent = "Cannot read the node: " + error.message;
    $("problem").hidden = false;
  }
}

async function put(event) {
  event.preventDefault();
  const file = $("put-file").files[0];
  if (!file) return;
  text("put-result", "storing…");
  try {
    const response = await api("/api/v1/values", {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body: file,
    });
    const result = await response.json();
    text("put-result", result.key);
  } catch (error) {
    text("put-result", "failed: " + error.message);
  }
}

async function get(event) {
  event.preventDefault();
  const key = $("get-key").value.trim();
  const out = $("get-result");
  out.textContent = "fetching…";
  try {
    const response = await api("/api/v1/values/" + encodeURIComponent(key));
    const checked = response.headers.get("X-Content-Key") === key ? "hash matches the key" : "";
    const blob = await response.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = key;
    link.textContent = `download ${bytes(blob.size)}`;
    out.replaceChildren(link, document.createTextNode(checked ? ` (${checked})` : ""));
  } catch (error) {
    out.textContent = "failed: " + error.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("lumera-p2p-token", $("token").value.trim());
    $("token-form").hidden = true;
    refresh();
  });
  $("put-form").addEventListener("submit", put);
  $("get-form").addEventListener("submit", get);
  refresh();
  setInterval(refresh, REFRESH_MS);
});
