// regenwatch review: keyboard shortcuts. The app's only script (CSP script-src 'self').
// It submits the page's own forms and follows the page's own links; it never
// inserts markup, so nothing from a page's text can become code.
(function () {
  "use strict";
  function typing(el) {
    return el && (el.tagName === "INPUT" && el.type !== "checkbox" || el.tagName === "TEXTAREA" || el.isContentEditable);
  }
  function go(id) {
    var a = document.getElementById(id);
    if (a && a.href) { window.location.assign(a.href); return true; }
    return false;
  }
  function click(id) {
    var b = document.getElementById(id);
    if (b && !b.disabled) { b.disabled = false; b.click(); return true; }
    return false;
  }

  function queueKeys(ev) {
    var rows = Array.prototype.slice.call(document.querySelectorAll("table.queue tr.row"));
    var cur = rows.findIndex(function (r) { return r.classList.contains("selected"); });
    function select(i) {
      if (!rows.length) return;
      i = Math.max(0, Math.min(rows.length - 1, i));
      rows.forEach(function (r) { r.classList.remove("selected"); });
      rows[i].classList.add("selected");
      rows[i].scrollIntoView({block: "nearest"});
      var link = rows[i].querySelector("a.open");
      if (link) link.focus({preventScroll: true});
    }
    switch (ev.key) {
      case "j": case "ArrowDown": select(cur + 1); return true;
      case "k": case "ArrowUp": select(cur < 0 ? 0 : cur - 1); return true;
      case "Enter": case "o":
        // Enter on a focused filter chip or button keeps its own meaning.
        var el = document.activeElement;
        if (ev.key === "Enter" && el && (el.tagName === "A" || el.tagName === "BUTTON") && !el.classList.contains("open")) return false;
        if (cur < 0 && rows.length) cur = 0;
        if (cur >= 0) { var l = rows[cur].querySelector("a.open"); if (l) window.location.assign(l.href); }
        return true;
      case "u": return go(document.querySelector("#status-undecided.on") ? "status-all" : "status-undecided");
      case "h": return go("severity-high");
    }
    return false;
  }

  var submitting = false;
  function pageKeys(ev) {
    if (submitting) return true;
    var k = ev.key;
    if (k === "c" || k === "r" || k === "e") {
      submitting = true;
      return click({c: "btn-confirm", r: "btn-reject", e: "btn-escalate"}[k]);
    }
    if (/^[1-9]$/.test(k)) {
      var box = document.getElementById("cat-" + k);
      if (box) { box.checked = !box.checked; return true; }
      return false;
    }
    switch (k) {
      case "n": var note = document.getElementById("note"); if (note) note.focus(); return true;
      case "j": case "ArrowRight": return go("next");
      case "k": case "ArrowLeft": return go("prev");
      case "q": case "u": return go("back");
    }
    return false;
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var el = document.activeElement;
    if (typing(el)) {
      if (el.id === "note" && (ev.key === "Enter" || ev.key === "Escape")) { ev.preventDefault(); el.blur(); }
      return;
    }
    var view = document.body.getAttribute("data-view");
    var handled = view === "queue" ? queueKeys(ev) : view === "page" ? pageKeys(ev) : false;
    if (handled) ev.preventDefault();
  });
})();
