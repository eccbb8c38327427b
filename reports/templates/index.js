// Fleet index, progressive: without JavaScript the table is complete and the filter form stays
// hidden. With it: search, filters by status, role and check id, and sortable columns.
// Host data is only ever read as text (textContent, data-* attributes), never parsed as markup.
(function () {
  'use strict';
  var form = document.getElementById('filters');
  var table = document.getElementById('hosts');
  if (!form || !table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var q = document.getElementById('q');
  var status = document.getElementById('f-status');
  var role = document.getElementById('f-role');
  var check = document.getElementById('f-check');
  var shown = document.getElementById('shown');
  form.hidden = false;

  function words(value) { return value ? value.split(' ') : []; }

  function apply() {
    var text = q.value.trim().toLowerCase();
    var visible = 0;
    rows.forEach(function (row) {
      var codes = Array.prototype.slice.call(row.querySelectorAll('td.ids code'));
      var ids = codes.map(function (c) { return c.textContent; });
      var titles = codes.map(function (c) { return c.title; });
      var haystack = (row.textContent + ' ' + titles.join(' ')).toLowerCase();
      var show = (!text || haystack.indexOf(text) >= 0) &&
        (!status.value || row.dataset.status === status.value) &&
        (!role.value || words(row.dataset.roles).indexOf(role.value) >= 0) &&
        (!check.value || ids.indexOf(check.value) >= 0);
      row.hidden = !show;
      if (show) { visible += 1; }
    });
    shown.textContent = visible === rows.length ? rows.length + ' hosts' : visible + ' of ' + rows.length + ' hosts shown';
  }
  [q, status, role, check].forEach(function (control) {
    control.addEventListener(control === q ? 'input' : 'change', apply);
  });
  form.addEventListener('submit', function (event) { event.preventDefault(); });
  form.addEventListener('reset', function () { window.setTimeout(apply, 0); });

  // Sorting: each column heading becomes a button; numbers sort by data-sort, text by content.
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function key(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim().toLowerCase();
    return numeric ? parseFloat(raw) || 0 : raw;
  }
  headers.forEach(function (th, index) {
    var button = document.createElement('button');
    button.type = 'button';
    button.className = 'sort';
    while (th.firstChild) { button.appendChild(th.firstChild); }
    th.appendChild(button);
    button.addEventListener('click', function () {
      var numeric = th.dataset.type === 'number';
      // First click: numbers (status, problem count) worst first, text A to Z; then toggle.
      var current = th.getAttribute('aria-sort');
      var ascending = current ? current !== 'ascending' : !numeric;
      headers.forEach(function (other) { other.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
      var order = rows.map(function (row, i) { return [key(row, index, numeric), i, row]; });
      order.sort(function (a, b) {
        if (a[0] < b[0]) { return ascending ? -1 : 1; }
        if (a[0] > b[0]) { return ascending ? 1 : -1; }
        return a[1] - b[1];
      });
      order.forEach(function (entry) { body.appendChild(entry[2]); });
    });
  });

  // A link to #check=ID (from elsewhere) opens the index filtered to that check.
  var match = /^#check=(.+)$/.exec(window.location.hash);
  if (match) { check.value = decodeURIComponent(match[1]); }
  apply();
})();
