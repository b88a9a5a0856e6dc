// Review screens: keyboard shortcuts, the help overlay, verdict modes, the time-on-item timer.
// base.html loads it once on every page; it acts only on markup the review screens have.
// Pages work without this file (plain forms and links); it only makes them faster to drive.
// Shortcuts are declared in the markup: an element with data-hotkey="x" is clicked on key x.
// How htmx treats the conflict (409) and invalid form (422) responses, swapped in place like a
// 200, is set declaratively: responseHandling in base.html's htmx-config meta.
"use strict";

(() => {
  document.documentElement.classList.add("js");

  let timerStart = Date.now();
  let timerHandle = null;

  const panel = () => document.getElementById("verdict-panel");
  const overlay = () => document.getElementById("help-overlay");

  function isTyping(target) {
    if (!target || !target.tagName) return false;
    const tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function visible(el) {
    return el && !el.disabled && el.offsetParent !== null;
  }

  function hotkey(key) {
    const quoted = CSS.escape(key);
    const all = document.querySelectorAll(`[data-hotkey="${quoted}"], [data-hotkey-alt="${quoted}"]`);
    return Array.from(all).find(visible) || null;
  }

  // --- help overlay --------------------------------------------------------------------------
  let helpOpener = null;

  function toggleHelp(show) {
    const el = overlay();
    if (!el) return;
    const open = show === undefined ? el.hidden : show;
    el.hidden = !open;
    if (open) {
      helpOpener = document.activeElement;
      document.getElementById("help-close")?.focus();
    } else if (helpOpener && document.contains(helpOpener)) {
      helpOpener.focus();  // back where the help was opened from
    }
  }

  // Tab and Shift+Tab stay inside the open help: it is a modal dialog.
  function trapFocus(event) {
    const el = overlay();
    const focusable = Array.from(el.querySelectorAll("button, a[href], [tabindex]")).filter(visible);
    if (!focusable.length) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    const inside = el.contains(document.activeElement);
    if (event.shiftKey && (document.activeElement === first || !inside)) {
      last.focus();
      event.preventDefault();
    } else if (!event.shiftKey && (document.activeElement === last || !inside)) {
      first.focus();
      event.preventDefault();
    }
  }

  // --- verdict modes ---------------------------------------------------------------------------
  function setMode(mode) {
    const p = panel();
    if (!p || p.classList.contains("adj-panel")) return;
    p.dataset.mode = mode || "";
    if (mode === "relabel") {
      p.querySelector("#id_is_misbehavior")?.focus();
    } else if (mode === "unsure") {
      p.querySelector("#id_rationale")?.focus();
    }
  }

  function syncMisbehaviorType(root) {
    const mb = root.querySelector("#id_is_misbehavior");
    const type = root.querySelector("#id_misbehavior_type");
    if (!mb || !type) return;
    const no = mb.value === "no";
    if (no) type.value = "";
    type.disabled = no;
  }

  function submitCurrent() {
    const p = panel();
    if (!p) return;
    if (p.classList.contains("adj-panel")) {
      document.getElementById("btn-adjudicate")?.click();
      return;
    }
    const mode = p.dataset.mode;
    if (!mode) return;
    p.querySelector(`button[data-verdict="${mode}"]`)?.click();
  }

  // --- timer -----------------------------------------------------------------------------------
  function startTimer() {
    timerStart = Date.now();
    if (timerHandle) clearInterval(timerHandle);
    tick();
    timerHandle = setInterval(tick, 1000);
  }

  function tick() {
    const seconds = Math.floor((Date.now() - timerStart) / 1000);
    const shown = document.querySelector("[data-timer]");
    if (shown) {
      const m = Math.floor(seconds / 60);
      const s = seconds % 60;
      shown.textContent = `${m}:${String(s).padStart(2, "0")}`;
    }
    const field = document.getElementById("id_seconds_client");
    if (field) field.value = String(Math.min(seconds, 3600));
  }

  // --- sections that fold (_record.html) ------------------------------------------------------
  function setFolded(toggle, folded) {
    const body = document.getElementById(toggle.getAttribute("aria-controls"));
    if (!body) return;
    toggle.setAttribute("aria-expanded", folded ? "false" : "true");
    body.hidden = folded;
    toggle.closest("section")?.classList.toggle("folded", folded);
  }

  function foldAll(folded) {
    document.querySelectorAll("button.fold-toggle").forEach((toggle) => setFolded(toggle, folded));
  }

  // A jump to a folded section (or to something inside one) unfolds it first.
  function unfoldFor(hash) {
    if (!hash || hash.length < 2) return;
    const target = document.getElementById(decodeURIComponent(hash.slice(1)));
    if (!target) return;
    const section = target.closest("section.fold");
    const toggle = section?.querySelector("button.fold-toggle");
    if (toggle && toggle.getAttribute("aria-expanded") === "false") setFolded(toggle, false);
  }

  // --- queue rows ------------------------------------------------------------------------------
  function moveRow(delta) {
    const rows = Array.from(document.querySelectorAll("tr[data-row]"));
    if (!rows.length) return false;
    const index = rows.findIndex((row) => row.classList.contains("selected"));
    let next = Math.max(0, Math.min(rows.length - 1, index + delta));
    if (index < 0) next = delta > 0 ? 0 : rows.length - 1;
    rows.forEach((row) => row.classList.remove("selected"));
    rows[next].classList.add("selected");
    rows[next].querySelector("a.row-link")?.focus();
    return true;
  }

  // --- wiring ----------------------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    const key = event.key;
    const help = overlay();

    if (key === "Tab" && help && !help.hidden) { trapFocus(event); return; }
    if (key === "Escape") {
      if (help && !help.hidden) { toggleHelp(false); event.preventDefault(); return; }
      const p = panel();
      if (p && p.dataset.mode && !p.classList.contains("adj-panel")) setMode("");
      if (isTyping(event.target)) event.target.blur();
      return;
    }
    if (key === "Enter" && (event.ctrlKey || event.metaKey)) {
      if (event.target?.closest?.("#verdict-panel")) {
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
      const search = document.getElementById("filter-q");
      if (search) { search.focus(); search.select(); event.preventDefault(); }
      return;
    }
    if (key === "a") {
      const rationale = document.querySelector(".adj-panel #id_rationale");
      if (rationale) { rationale.focus(); event.preventDefault(); return; }
    }
    // Back to the queue, from the review screens (their help overlay names the URL).
    const queueUrl = help?.dataset.queueUrl;
    if (key === "q" && queueUrl && !document.getElementById("queue")) {
      window.location.href = queueUrl;
      return;
    }
    if ((key === "j" || key === "k") && document.querySelector("tr[data-row]") && !hotkey(key)) {
      if (moveRow(key === "j" ? 1 : -1)) event.preventDefault();
      return;
    }
    const target = hotkey(key);
    if (!target) return;
    event.preventDefault();
    target.click();
  });

  document.addEventListener("click", (event) => {
    const jump = event.target.closest?.("#jumpbar a[href^='#']");
    if (jump) unfoldFor(jump.getAttribute("href"));
    const fold = event.target.closest?.("button.fold-toggle");
    if (fold) { setFolded(fold, fold.getAttribute("aria-expanded") === "true"); return; }
    const el = event.target.closest?.("[data-action], button[data-verdict]");
    if (!el) return;
    const action = el.dataset.action;
    if (action === "help") { toggleHelp(true); return; }
    if (action === "fold-all" || action === "unfold-all") { foldAll(action === "fold-all"); return; }
    if (action === "help-close") { toggleHelp(false); return; }
    if (action === "fill") {
      const form = document.getElementById("adjudication-form");
      if (!form) return;
      for (const name of ["is_misbehavior", "misbehavior_type", "correct_decision"]) {
        const field = form.querySelector(`#id_${name}`);
        if (field) { field.disabled = false; field.value = el.getAttribute(`data-fill-${name}`) || ""; }
      }
      syncMisbehaviorType(form);
      // Focus stays on the button: "a" goes to the rationale (a focused rationale would take
      // the "a" as text).
      return;
    }
    const verdict = el.dataset.verdict;
    const p = panel();
    if (verdict && p && p.dataset.mode !== verdict) {
      // First press opens the fields for this verdict; the second press saves it.
      event.preventDefault();
      setMode(verdict);
    }
  });

  document.addEventListener("change", (event) => {
    if (event.target?.id === "id_is_misbehavior") {
      syncMisbehaviorType(event.target.form || document);
    }
    // The queue's "tick every row of this page" box (bulk actions).
    if (event.target?.dataset?.action === "pick-page") {
      for (const box of document.querySelectorAll("input.bulk-pick")) box.checked = event.target.checked;
    }
  });

  document.addEventListener("dblclick", (event) => {
    const row = event.target.closest?.("tr[data-href]");
    if (row) window.location.href = row.dataset.href;
  });

  // Where focus goes when a review screen arrives: the first field in error after a refused
  // save, the conflict's "Reload item" after a conflict, else the item's heading, so a key
  // pressed next acts on this item (never on a link left focused from the last one).
  function placeFocus() {
    const fieldError = document.querySelector("#verdict-panel .field-error");
    const field = fieldError?.previousElementSibling;
    if (field && field.matches("select, input, textarea") && visible(field)) {
      field.focus();
      return;
    }
    const error = fieldError || document.getElementById("form-errors");
    if (error) {
      error.setAttribute("tabindex", "-1");
      error.focus();
      return;
    }
    if (document.getElementById("conflict-reload")) return;  // init focused it
    const heading = document.querySelector("#review-main h1, #adjudication-main h1");
    if (heading) {
      heading.setAttribute("tabindex", "-1");
      heading.focus({ preventScroll: true });
    }
  }

  function init() {
    const p = panel();
    if (p) {
      syncMisbehaviorType(p);
      document.querySelector("#timeline-list li.current")?.scrollIntoView?.({ block: "center" });
    }
    if (document.querySelector("[data-timer]")) startTimer();
    // After a conflict, Enter reloads the item; the verdict shortcuts still work as well.
    document.getElementById("conflict-reload")?.focus({ preventScroll: true });
  }

  document.addEventListener("htmx:afterSwap", (event) => {
    const target = event.detail.target;
    if (target && (target.id === "review-main" || target.id === "adjudication-main" || document.getElementById("review-main"))) {
      init();
      window.scrollTo(0, 0);
      placeFocus();
    }
  });

  window.addEventListener("hashchange", () => unfoldFor(window.location.hash));

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

// Beside each verdict select (_verdict.html#rubric) the guidelines'
// definition of the value chosen: when the select changes (or "Use these values" fills it), the
// matching entry of the folded list below is copied in. The entries are the server's sanitised
// HTML already in the page, cloned as nodes: nothing is parsed from a string.
(() => {
  function showRubric(container) {
    const select = document.getElementById(container.dataset.rubricFor);
    const chosen = container.querySelector(".rubric-chosen");
    if (!select || !chosen) return;
    const value = select.disabled ? "" : select.value;
    const entry = value
      ? Array.from(container.querySelectorAll(".rubric-entry")).find((el) => el.dataset.rubricValue === value)
      : null;
    if (!entry) {
      const none = document.createElement("p");
      none.className = "muted rubric-none";
      none.textContent = container.dataset.rubricNone || "";
      chosen.replaceChildren(none);
      return;
    }
    const parts = Array.from(entry.children).filter((el) => !el.classList.contains("rubric-term"));
    chosen.replaceChildren(...parts.map((el) => el.cloneNode(true)));
  }

  function showAll() {
    document.querySelectorAll("[data-rubric-for]").forEach(showRubric);
  }

  document.addEventListener("change", (event) => {
    if (event.target?.closest?.("#verdict-panel") && event.target.matches("select")) showAll();
  });
  document.addEventListener("click", (event) => {
    if (event.target.closest?.("[data-action='fill']")) showAll();
  });
  document.addEventListener("htmx:afterSwap", showAll);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", showAll);
  } else {
    showAll();
  }
})();
