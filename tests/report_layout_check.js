// report_layout_check.js - appended to a copy of report.html by test_report_chromium.sh and run by
// headless Chromium: for every chart, the legend must not overlap the plot area (so it covers no
// data) and must lie inside the chart; every legend entry must name a series that is drawn
// (points, bars or a line of its colour) and, for a line, not hidden under another line with
// the same points.  Writes "LAYOUT-OK n" or "LAYOUT-FAIL ..." lines into a pre element, id layout-check.
(function () {
  var out = [], charts = 0, legends = 0;
  function inter(a, b) {
    return a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  }
  var svgs = document.querySelectorAll('svg');
  for (var i = 0; i < svgs.length; i++) {
    var svg = svgs[i], name = (svg.querySelector('text[font-weight]') || {}).textContent || ('chart ' + i);
    charts++;
    var plot = svg.querySelector('rect.plot-area'), leg = svg.querySelector('g.legend');
    if (!plot) { out.push('LAYOUT-FAIL ' + name + ': no plot area'); continue; }
    if (!leg) continue;
    legends++;
    var pb = plot.getBoundingClientRect(), lb = leg.getBoundingClientRect(), sb = svg.getBoundingClientRect();
    if (inter(lb, pb)) out.push('LAYOUT-FAIL ' + name + ': legend overlaps the plot area');
    if (lb.left < sb.left - 0.5 || lb.right > sb.right + 0.5 || lb.top < sb.top - 0.5 || lb.bottom > sb.bottom + 0.5)
      out.push('LAYOUT-FAIL ' + name + ': legend outside the chart');
    var lines = [].slice.call(svg.querySelectorAll('polyline')).filter(function (p) { return !leg.contains(p); });
    var items = leg.querySelectorAll('.legend-item');
    for (var k = 0; k < items.length; k++) {
      var c = items[k].getAttribute('data-color'), label = items[k].textContent, shown = false;
      var ib = items[k].getBoundingClientRect();
      if (!(ib.width > 0 && ib.height > 0)) out.push('LAYOUT-FAIL ' + name + ': legend entry ' + label + ' has no size');
      for (var j = 0; j < lines.length; j++) {
        if (lines[j].getAttribute('stroke') !== c || lines[j].points.length < 2) continue;
        var pts = lines[j].getAttribute('points').replace(/\s+/g, ' ').trim(), covered = false;
        for (var m = j + 1; m < lines.length; m++)
          if (lines[m].getAttribute('points').replace(/\s+/g, ' ').trim() === pts) covered = true;
        if (!covered) shown = true;
      }
      var groups = svg.querySelectorAll('g[fill]');
      for (var g = 0; g < groups.length; g++)
        if (!leg.contains(groups[g]) && groups[g].getAttribute('fill') === c && groups[g].querySelector('circle, rect')) shown = true;
      if (!shown) out.push('LAYOUT-FAIL ' + name + ': legend entry "' + label + '" (' + c + ') has no visible series');
    }
  }
  out.push('LAYOUT-OK ' + charts + ' charts, ' + legends + ' legends checked');
  var pre = document.createElement('pre');
  pre.id = 'layout-check';
  pre.textContent = out.join('\n');
  document.body.appendChild(pre);
})();
