// ckptbench report: sortable tables, prompt and scorer pickers for the seed grids, and a lightbox that
// shows the full PNG with its infotext. Plain JavaScript, no library, works from file:// and any host.
(function () {
  "use strict";

  // --- sortable tables: click a header to sort by that column; click again to reverse ----------------
  function sortValue(cell) {
    if (!cell) return null;
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (raw === "" || raw === "–") return null;
    var number = Number(raw);
    return isNaN(number) ? raw.toLowerCase() : number;
  }

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null) return 1;  // missing values always last
    if (b === null) return -1;
    if (typeof a === typeof b) return a < b ? -1 : 1;
    return typeof a === "number" ? -1 : 1;
  }

  function sortTable(table, header) {
    var column = header.cellIndex;
    // First click: best first where the column has a direction (data-best), else ascending.
    var current = header.getAttribute("aria-sort");
    var ascending = current ? current !== "ascending" : header.getAttribute("data-best") !== "high";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = sortValue(r1.cells[column]), b = sortValue(r2.cells[column]);
      if (a === null || b === null) return compare(a, b);
      return ascending ? compare(a, b) : compare(b, a);
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(header.parentNode.cells, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    var head = table.tHead;
    if (!head) return;
    Array.prototype.forEach.call(head.rows[head.rows.length - 1].cells, function (th) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortTable(table, th); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortTable(table, th); });
    });
  });

  // --- leaderboard columns: seed SD and good-image rate can be hidden; hidden at first when the table would
  // not fit the window, so that every scorer's mean is in view without scrolling sideways ---------------
  document.querySelectorAll(".columns-picker").forEach(function (picker) {
    var table = document.getElementById(picker.getAttribute("data-table"));
    if (!table) return;
    var boxes = Array.prototype.slice.call(picker.querySelectorAll("input[data-hide]"));
    function apply() {
      boxes.forEach(function (box) { table.classList.toggle("hide-" + box.getAttribute("data-hide"), !box.checked); });
    }
    boxes.forEach(function (box) { box.addEventListener("change", apply); });
    var box = table.parentNode;
    // Least needed first: the good-image rate, then the seed SD.
    ["good", "sd"].forEach(function (kind) {
      var input = picker.querySelector('input[data-hide="' + kind + '"]');
      if (input && box.scrollWidth > box.clientWidth + 1) {
        input.checked = false;
        apply();
        picker.querySelector(".fit-note").hidden = false;
      }
    });
  });

  // --- seed grids: one prompt at a time, one scorer's values at a time ------------------------------
  var grids = document.getElementById("grids");
  var promptPicker = document.getElementById("prompt-picker");
  function showGrid(anchor) {
    var found = false;
    document.querySelectorAll(".seed-grid").forEach(function (grid) {
      var match = grid.id === anchor;
      grid.hidden = !match;
      found = found || match;
    });
    return found;
  }
  // A link to a grid (#grid-…, e.g. from the contact sheet) shows that grid; other anchors leave them as they are.
  function showGridOfHash() {
    var wanted = window.location.hash.slice(1);
    var target = wanted && document.getElementById(wanted);
    if (!target || !target.classList.contains("seed-grid") || !showGrid(wanted)) return;
    promptPicker.value = wanted;
    target.scrollIntoView();  // the browser could not scroll to it while it was hidden
  }
  if (promptPicker) {
    promptPicker.addEventListener("change", function () { showGrid(promptPicker.value); });
    showGridOfHash();
    window.addEventListener("hashchange", showGridOfHash);
  }
  // Each grid shows the chosen scorer when it has it, else its own first scorer (a style suite's grid has
  // only style scores).
  var scorerPicker = document.getElementById("grid-scorer");
  if (scorerPicker && grids) {
    scorerPicker.addEventListener("change", function () {
      document.querySelectorAll(".seed-grid").forEach(function (grid) {
        var own = (grid.getAttribute("data-scorers") || "").split(" ");
        grid.setAttribute("data-scorer", own.indexOf(scorerPicker.value) >= 0 ? scorerPicker.value : own[0]);
      });
    });
  }

  // --- contact sheet: every prompt at once; another seed's pictures are copied from the seed grids ----
  var contactSeed = document.getElementById("contact-seed");
  function contactCell(grid, rowIndex, seed) {
    // A grid with many seeds is split into several tables (blocks of seeds): find the seed's own table.
    var found = null;
    grid.querySelectorAll("table.grid").forEach(function (table, t) {
      table.querySelectorAll("thead th.seed").forEach(function (th, i) {
        if (found) return;
        if (seed === "" ? t === 0 && i === 0 : th.getAttribute("data-seed") === seed) {
          var row = table.tBodies[0] && table.tBodies[0].rows[rowIndex];
          found = row ? row.cells[i + 1] || null : null;
        }
      });
    });
    return found && found.querySelector("a.thumb");
  }
  if (contactSeed) {
    contactSeed.addEventListener("change", function () {
      document.querySelectorAll("#contact-sheet tbody tr").forEach(function (row) {
        var grid = document.getElementById(row.getAttribute("data-grid"));
        if (!grid) return;
        row.querySelectorAll("td[data-row]").forEach(function (td) {
          var link = contactCell(grid, Number(td.getAttribute("data-row")), contactSeed.value);
          td.textContent = "";
          if (link) {
            td.appendChild(link.cloneNode(true));
          } else {
            var empty = document.createElement("span");
            empty.className = "empty";
            empty.textContent = "–";
            td.appendChild(empty);
          }
        });
      });
    });
  }

  // --- lightbox: the full PNG and its A1111 infotext ------------------------------------------------
  var infotexts = {};
  var requested = {};
  var dialog = document.getElementById("lightbox");
  var shownKey = null;
  window.ckptbenchInfotext = function (anchor, texts) {
    Object.keys(texts).forEach(function (key) { infotexts[key] = texts[key]; });
    if (shownKey && infotexts[shownKey] !== undefined) fillInfotext(shownKey);
  };
  function fillInfotext(key) {
    var text = infotexts[key];
    dialog.querySelector("pre").textContent = text === undefined ? "(loading infotext…)" : text;
  }
  function open(link) {
    var grid = link.closest("[data-infotext]");  // a seed grid, or a contact sheet row
    shownKey = link.getAttribute("data-key");
    dialog.querySelector("img").src = link.getAttribute("href");
    dialog.querySelector("a.full").href = link.getAttribute("href");
    dialog.querySelector(".caption").textContent = link.getAttribute("data-caption") || "";
    fillInfotext(shownKey);
    var script = grid && grid.getAttribute("data-infotext");
    if (script && !requested[script]) {
      requested[script] = true;
      var tag = document.createElement("script");
      tag.src = script;
      document.body.appendChild(tag);
    }
    if (!dialog.open) dialog.showModal();
    document.body.classList.add("lightbox-open");
  }
  if (dialog) {
    document.addEventListener("click", function (e) {
      var link = e.target.closest && e.target.closest("a.thumb");
      if (!link) return;
      e.preventDefault();
      open(link);
    });
    dialog.querySelector("button.close").addEventListener("click", function () { dialog.close(); });
    dialog.addEventListener("close", function () { document.body.classList.remove("lightbox-open"); });
    dialog.addEventListener("click", function (e) { if (e.target === dialog) dialog.close(); });
  }
})();
