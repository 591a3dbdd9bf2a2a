// Live updates (server-sent events) and keyboard shortcuts. No build step, no framework.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var table = document.getElementById("cases");
  var caseId = document.getElementById("case-id");
  var signedIn = document.getElementById("signed-in-as");

  function typing(el) { return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT"); }

  // A queue list refreshes its rows in place (keeping ticked boxes) unless the user is typing.
  function refreshList() {
    fetch(location.href, { credentials: "same-origin" }).then(function (r) { return r.text(); }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.querySelector("#cases tbody"), total = doc.getElementById("total");
      if (!fresh) return;
      var ticked = Array.prototype.map.call(table.querySelectorAll("input[name=cases]:checked"), function (b) { return b.value.split("|")[0]; });
      var known = Array.prototype.map.call(table.querySelectorAll("tr.case-row"), function (r) { return r.dataset.case; });
      table.querySelector("tbody").replaceWith(fresh);
      table.querySelectorAll("tr.case-row").forEach(function (row) {
        if (known.indexOf(row.dataset.case) < 0) row.classList.add("fresh");
        var box = row.querySelector("input[name=cases]");
        if (box && ticked.indexOf(row.dataset.case) >= 0) box.checked = true;
      });
      if (total) document.getElementById("total").textContent = total.textContent;
    });
  }

  if (signedIn && window.EventSource) {
    var source = new EventSource("/events");
    source.addEventListener("case", function (ev) {
      var c = JSON.parse(ev.data);
      if (table && !typing(document.activeElement)) { refreshList(); return; }
      if (caseId && caseId.textContent === c.case_id) {
        live.textContent = "This case was just changed (" + c.state.replace("_", " ") + (c.assignee ? ", " + c.assignee : "") + ") — click to reload.";
      } else if (!caseId) {
        live.textContent = "New or changed case in " + c.queue + ": " + c.title + " — click to reload.";
      } else { return; }
      live.hidden = false;
    });
    source.addEventListener("unavailable", function () { live.textContent = "The inbox cannot reach the cases right now."; live.hidden = false; });
    live.addEventListener("click", function () { location.reload(); });
  }

  var selectAll = document.getElementById("select-all");
  if (selectAll) selectAll.addEventListener("change", function () {
    table.querySelectorAll("input[name=cases]").forEach(function (b) { b.checked = selectAll.checked; });
  });

  var cursor = -1;
  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (typing(ev.target)) { if (ev.key === "Escape") ev.target.blur(); return; }
    function click(id) { var el = document.getElementById(id); if (el) { ev.preventDefault(); el.click(); } }
    function focus(id) { var el = document.getElementById(id); if (el) { ev.preventDefault(); el.focus(); } }
    if (table) {
      var rows = table.querySelectorAll("tr.case-row");
      if (ev.key === "j" || ev.key === "k") {
        if (!rows.length) return;
        if (cursor >= 0 && rows[cursor]) rows[cursor].classList.remove("selected");
        cursor = Math.max(0, Math.min(rows.length - 1, cursor + (ev.key === "j" ? 1 : -1)));
        rows[cursor].classList.add("selected"); rows[cursor].scrollIntoView({ block: "nearest" });
      } else if (ev.key === "Enter" && rows[cursor]) { location.href = rows[cursor].querySelector("a.case-link").href; }
      else if (ev.key === "x" && rows[cursor]) { var box = rows[cursor].querySelector("input[name=cases]"); box.checked = !box.checked; }
      else if (ev.key === "/") { focus("search"); }
    } else if (caseId) {
      if (ev.key === "c") click("claim");
      else if (ev.key === "r") focus("reply-text");
      else if (ev.key === "n") focus("note-text");
    }
  });
}());
