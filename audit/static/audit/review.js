// Review screens: keyboard shortcuts, the help overlay, verdict modes, the time-on-item timer.
// Pages work without this file (plain forms and links); it only makes them faster to drive.
// Shortcuts are declared in the markup: an element with data-hotkey="x" is clicked on key x.
"use strict";

(function () {
  if (window.auditReviewLoaded) return;
  window.auditReviewLoaded = true;
  document.documentElement.classList.add("js");

  var timerStart = Date.now();
  var timerHandle = null;

  function panel() { return document.getElementById("verdict-panel"); }
  function overlay() { return document.getElementById("help-overlay"); }

  function isTyping(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function visible(el) {
    return el && !el.disabled && el.offsetParent !== null;
  }

  function hotkey(key) {
    var all = document.querySelectorAll('[data-hotkey="' + CSS.escape(key) + '"], [data-hotkey-alt="' + CSS.escape(key) + '"]');
    for (var i = 0; i < all.length; i++) {
      if (visible(all[i])) return all[i];
    }
    return null;
  }

  // --- help overlay --------------------------------------------------------------------------
  function toggleHelp(show) {
    var el = overlay();
    if (!el) return;
    var open = show === undefined ? el.hidden : show;
    el.hidden = !open;
    if (open) {
      var close = document.getElementById("help-close");
      if (close) close.focus();
    }
  }

  // --- verdict modes ---------------------------------------------------------------------------
  function setMode(mode) {
    var p = panel();
    if (!p || p.classList.contains("adj-panel")) return;
    p.dataset.mode = mode || "";
    if (mode === "relabel") {
      var first = p.querySelector("#id_is_misbehavior");
      if (first) first.focus();
    } else if (mode === "unsure") {
      var reason = p.querySelector("#id_rationale");
      if (reason) reason.focus();
    }
  }

  function syncMisbehaviorType(root) {
    var mb = root.querySelector("#id_is_misbehavior");
    var type = root.querySelector("#id_misbehavior_type");
    if (!mb || !type) return;
    var no = mb.value === "no";
    if (no) type.value = "";
    type.disabled = no;
  }

  function submitCurrent() {
    var p = panel();
    if (!p) return;
    if (p.classList.contains("adj-panel")) {
      var adj = document.getElementById("btn-adjudicate");
      if (adj) adj.click();
      return;
    }
    var mode = p.dataset.mode;
    if (!mode) return;
    var button = p.querySelector('button[data-verdict="' + mode + '"]');
    if (button) button.click();
  }

  // --- timer -----------------------------------------------------------------------------------
  function startTimer() {
    timerStart = Date.now();
    if (timerHandle) clearInterval(timerHandle);
    tick();
    timerHandle = setInterval(tick, 1000);
  }

  function tick() {
    var seconds = Math.floor((Date.now() - timerStart) / 1000);
    var shown = document.querySelector("[data-timer]");
    if (shown) {
      var m = Math.floor(seconds / 60);
      var s = seconds % 60;
      shown.textContent = m + ":" + (s < 10 ? "0" : "") + s;
    }
    var field = document.getElementById("id_seconds_client");
    if (field) field.value = String(Math.min(seconds, 3600));
  }

  // --- queue rows ------------------------------------------------------------------------------
  function moveRow(delta) {
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-row]"));
    if (!rows.length) return false;
    var index = rows.findIndex(function (row) { return row.classList.contains("selected"); });
    var next = Math.max(0, Math.min(rows.length - 1, index + delta));
    if (index < 0) next = delta > 0 ? 0 : rows.length - 1;
    rows.forEach(function (row) { row.classList.remove("selected"); });
    rows[next].classList.add("selected");
    var link = rows[next].querySelector("a.row-link");
    if (link) link.focus();
    return true;
  }

  // --- wiring ----------------------------------------------------------------------------------
  document.addEventListener("keydown", function (event) {
    var key = event.key;
    var help = overlay();

    if (key === "Escape") {
      if (help && !help.hidden) { toggleHelp(false); event.preventDefault(); return; }
      var p = panel();
      if (p && p.dataset.mode && !p.classList.contains("adj-panel")) { setMode(""); }
      if (isTyping(event.target)) event.target.blur();
      return;
    }
    if (key === "Enter" && (event.ctrlKey || event.metaKey)) {
      if (event.target && event.target.closest && event.target.closest("#verdict-panel")) {
        event.preventDefault();
        submitCurrent();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (isTyping(event.target)) return;
    if (help && !help.hidden) {
      if (key === "?") { toggleHelp(false); event.preventDefault(); }
      return;
    }

    if (key === "?") { toggleHelp(true); event.preventDefault(); return; }
    if (key === "/") {
      var search = document.getElementById("filter-q");
      if (search) { search.focus(); search.select(); event.preventDefault(); }
      return;
    }
    if (key === "a") {
      var rationale = document.querySelector(".adj-panel #id_rationale");
      if (rationale) { rationale.focus(); event.preventDefault(); return; }
    }
    if (key === "q" && !document.getElementById("queue")) {
      window.location.href = "/";
      return;
    }
    if ((key === "j" || key === "k") && document.querySelector("tr[data-row]") && !hotkey(key)) {
      if (moveRow(key === "j" ? 1 : -1)) event.preventDefault();
      return;
    }
    var target = hotkey(key);
    if (!target) return;
    event.preventDefault();
    target.click();
  });

  document.addEventListener("click", function (event) {
    var el = event.target.closest ? event.target.closest("[data-action], button[data-verdict]") : null;
    if (!el) return;
    var action = el.dataset.action;
    if (action === "help") { toggleHelp(true); return; }
    if (action === "help-close") { toggleHelp(false); return; }
    if (action === "fill") {
      var form = document.getElementById("adjudication-form");
      if (!form) return;
      ["is_misbehavior", "misbehavior_type", "correct_decision"].forEach(function (name) {
        var field = form.querySelector("#id_" + name);
        if (field) { field.disabled = false; field.value = el.getAttribute("data-fill-" + name) || ""; }
      });
      syncMisbehaviorType(form);
      var reason = form.querySelector("#id_rationale");
      if (reason) reason.focus();
      return;
    }
    var verdict = el.dataset.verdict;
    var p = panel();
    if (verdict && p && p.dataset.mode !== verdict) {
      // First press opens the fields for this verdict; the second press saves it.
      event.preventDefault();
      setMode(verdict);
    }
  });

  document.addEventListener("change", function (event) {
    if (event.target && event.target.id === "id_is_misbehavior") {
      syncMisbehaviorType(event.target.form || document);
    }
  });

  document.addEventListener("dblclick", function (event) {
    var row = event.target.closest ? event.target.closest("tr[data-href]") : null;
    if (row) window.location.href = row.dataset.href;
  });

  // htmx does not swap 4xx responses by default; the conflict (409) and invalid form (422)
  // views are meant to be shown in place.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status === 409 || status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // Filter forms submit every field; bookmarks and pushed URLs keep only the ones that narrow
  // the queue (not empty, not the field's default).
  document.addEventListener("htmx:configRequest", function (event) {
    var form = event.detail.elt;
    if (event.detail.verb !== "get" || !form || !form.matches || !form.matches("form[data-clean-url]")) return;
    var data = event.detail.formData;
    var names = [];
    data.forEach(function (value, name) { if (names.indexOf(name) < 0) names.push(name); });
    names.forEach(function (name) {
      var field = form.elements.namedItem(name);
      var fallback = field && field.dataset ? field.dataset.default || "" : "";
      var kept = data.getAll(name).filter(function (value) { return value !== "" && value !== fallback; });
      data.delete(name);
      kept.forEach(function (value) { data.append(name, value); });
    });
  });

  function init() {
    var p = panel();
    if (p) {
      syncMisbehaviorType(p);
      var current = document.querySelector("#timeline-list li.current");
      if (current && current.scrollIntoView) current.scrollIntoView({ block: "center" });
    }
    if (document.querySelector("[data-timer]")) startTimer();
    // After a conflict, Enter reloads the item; the verdict shortcuts still work as well.
    var reload = document.getElementById("conflict-reload");
    if (reload) reload.focus({ preventScroll: true });
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && (target.id === "review-main" || target.id === "adjudication-main" || document.getElementById("review-main"))) {
      init();
      if (document.activeElement && isTyping(document.activeElement)) document.activeElement.blur();
      window.scrollTo(0, 0);
    }
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
