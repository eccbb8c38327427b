// Host page, progressive: without JavaScript the page is complete. With it, each remediation
// gets a copy button, and printing opens every collapsed section so the paper shows it all.
// Host data is only ever read as text (textContent), never parsed as markup.
(function () {
  'use strict';
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement('textarea');
      area.value = text;
      area.setAttribute('readonly', '');
      area.className = 'offscreen';
      document.body.appendChild(area);
      area.select();
      var ok = document.execCommand && document.execCommand('copy');
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error('copy refused')); }
    });
  }
  document.querySelectorAll('pre.remediation').forEach(function (pre) {
    var button = document.createElement('button');
    button.type = 'button';
    button.className = 'copy';
    button.textContent = 'Copy';
    button.setAttribute('aria-label', 'Copy the remediation for ' + (pre.dataset.check || 'this check'));
    button.addEventListener('click', function () {
      copyText(pre.textContent).then(function () {
        button.textContent = 'Copied';
      }, function () {
        button.textContent = 'Select and copy by hand';
      });
      window.setTimeout(function () { button.textContent = 'Copy'; }, 2500);
    });
    pre.parentNode.insertBefore(button, pre);
  });
  var closed = [];
  window.addEventListener('beforeprint', function () {
    closed = Array.prototype.filter.call(document.querySelectorAll('details'), function (d) { return !d.open; });
    closed.forEach(function (d) { d.open = true; });
  });
  window.addEventListener('afterprint', function () {
    closed.forEach(function (d) { d.open = false; });
    closed = [];
  });
})();
