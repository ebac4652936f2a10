/* aiqc ui: the pages' script. It reads URLs and ids from data- attributes, fetches JSON from
   /api/..., and writes every value with textContent or as an attribute (never as HTML). */
(function () {
  "use strict";

  var POLL_MS = 2000;
  // a queue page redraws its charts when its jobs change, at most this often (each is one query
  // of every job: about half a second at 10,000 jobs)
  var CHART_REFRESH_MS = 10000;

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  function getJSON(url) {
    return fetch(url, {headers: {Accept: "application/json"}, credentials: "same-origin"}).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        if (!response.ok) {
          throw new Error((body && body.error) || (response.status + " " + response.statusText));
        }
        return body;
      });
    });
  }

  function element(tag, attributes, text) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) { node.setAttribute(name, attributes[name]); });
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function formatNumber(value, digits) {
    if (value === null || value === undefined) { return ""; }
    if (typeof value === "number") { return value.toFixed(digits); }
    return String(value);
  }

  function formatValue(value) {
    if (value === null || value === undefined) { return ""; }
    if (typeof value === "object") { return JSON.stringify(value); }
    return String(value);
  }

  // --- charts: div.chart[data-src] -> Plotly.newPlot, or the note of a chart that does not apply
  function drawChart(container) {
    container.setAttribute("data-loaded", "loading");
    return getJSON(container.getAttribute("data-src")).then(function (body) {
      if (body && body.figure) {
        if (typeof Plotly === "undefined") { throw new Error("plotly.js did not load"); }
        // a redraw keeps the user's zoom and hidden traces (uirevision); a note is replaced
        var layout = Object.assign({}, body.figure.layout || {}, {autosize: true, uirevision: "aiqc"});
        var drawn = container.classList.contains("js-plotly-plot");
        if (!drawn) { container.textContent = ""; }
        container.classList.remove("note", "error");
        var draw = drawn ? Plotly.react : Plotly.newPlot;
        return draw(container, body.figure.data || [], layout, {responsive: true, displaylogo: false}).then(function () {
          container.setAttribute("data-loaded", "figure");
          container.setAttribute("data-drawn", String(Number(container.getAttribute("data-drawn") || 0) + 1));
        });
      }
      if (container.classList.contains("js-plotly-plot")) { Plotly.purge(container); }
      container.textContent = (body && body.note) || "This chart does not apply.";
      container.classList.remove("error");
      container.classList.add("note");
      container.setAttribute("data-loaded", "note");
    }).catch(function (error) {
      if (container.classList.contains("js-plotly-plot") && typeof Plotly !== "undefined") { Plotly.purge(container); }
      container.textContent = "Could not draw this chart: " + error.message;
      container.classList.remove("note");
      container.classList.add("error");
      container.setAttribute("data-loaded", "error");
    });
  }

  function drawCharts() {
    return Promise.all($all("div.chart[data-src]").map(drawChart));
  }

  // --- progress bars: <progress data-done data-total> + the span.progress-text after it
  function setProgress(bar, done, total) {
    bar.setAttribute("data-done", String(done));
    bar.setAttribute("data-total", String(total));
    bar.max = Math.max(total, 1);
    bar.value = done;
    var label = bar.nextElementSibling;
    if (label && label.classList.contains("progress-text")) { label.textContent = done + " / " + total; }
  }

  function progressCell(done, total) {
    var cell = element("td", {"class": "progress-cell"});
    var bar = element("progress", {});
    cell.appendChild(bar);
    cell.appendChild(document.createTextNode(" "));
    cell.appendChild(element("span", {"class": "progress-text"}));
    setProgress(bar, done, total);
    return cell;
  }

  // --- the queues page: #queues, polled every 2 s
  function tagLinks(cell, tags) {
    cell.textContent = "";
    (tags || []).forEach(function (tag) {
      cell.appendChild(element("a", {"class": "tag", href: "/?tag=" + encodeURIComponent(tag)}, tag));
    });
  }

  function queueRow(queue, states) {
    var id = String(queue.queue_id);
    var row = element("tr", {"data-queue-id": id});
    var check = element("td");
    check.appendChild(element("input", {type: "checkbox", name: "queues", value: id, "aria-label": "select queue " + id}));
    row.appendChild(check);
    var link = element("td");
    link.appendChild(element("a", {href: "/queue/" + id}, id));
    row.appendChild(link);
    row.appendChild(element("td", {"class": "name"}, queue.name || ""));
    var tags = element("td", {"class": "tags"});
    tagLinks(tags, queue.tags);
    row.appendChild(tags);
    row.appendChild(element("td", {}, queue.library));
    row.appendChild(element("td", {}, queue.analysis_type));
    states.forEach(function (state) { row.appendChild(element("td", {"class": "count", "data-state": state}, "0")); });
    row.appendChild(progressCell(queue.done, queue.total));
    var best = element("td", {"class": "best"});
    best.appendChild(element("span", {"class": "value"}));
    best.appendChild(document.createTextNode(" "));
    best.appendChild(element("span", {"class": "objective"}));
    row.appendChild(best);
    return row;
  }

  function updateQueueRow(row, queue) {
    $all("td[data-state]", row).forEach(function (cell) {
      cell.textContent = String(queue.counts[cell.getAttribute("data-state")] || 0);
    });
    var name = $("td.name", row);
    if (name) { name.textContent = queue.name || ""; }
    var bar = $("progress", row);
    if (bar) { setProgress(bar, queue.done, queue.total); }
    var value = $("td.best .value", row);
    if (value) { value.textContent = formatNumber(queue.best, 4); }
    var objective = $("td.best .objective", row);
    if (objective) { objective.textContent = queue.objective || ""; }
  }

  function initQueues() {
    var table = $("#queues");
    if (!table) { return; }
    var body = $("tbody", table);
    var states = $all("thead th[data-state]", table).map(function (th) { return th.getAttribute("data-state"); });
    function poll() {
      getJSON(table.getAttribute("data-api")).then(function (data) {
        var seen = {};
        data.queues.forEach(function (queue) {
          var id = String(queue.queue_id);
          seen[id] = true;
          var row = $('tr[data-queue-id="' + id + '"]', body);
          if (!row) {
            row = queueRow(queue, states);
            body.appendChild(row);
            var empty = $("#queues-empty");
            if (empty) { empty.remove(); }
          }
          updateQueueRow(row, queue);
        });
        $all("tr[data-queue-id]", body).forEach(function (row) {
          if (!seen[row.getAttribute("data-queue-id")]) { row.remove(); }
        });
        table.setAttribute("data-polled", String(Number(table.getAttribute("data-polled") || 0) + 1));
      }).catch(function (error) {
        table.setAttribute("data-error", error.message);
      }).then(function () { window.setTimeout(poll, POLL_MS); });
    }
    window.setTimeout(poll, POLL_MS);
  }

  // --- the queue page: #queue-summary polled; #jobs paged, sorted and filtered by /api/queue/ID/jobs
  function initQueue() {
    var table = $("#jobs");
    if (!table) { return; }
    var summary = $("#queue-summary");
    var params = new URLSearchParams(window.location.search);
    var view = {page: params.get("page") || "1", per_page: params.get("per_page") || "50",
                sort: params.get("sort") || "", order: params.get("order") || "asc",
                state: params.get("state") || "", split: params.get("split") || "", q: params.get("q") || ""};
    var controls = {state: $("#state-filter"), split: $("#split-filter"), q: $("#q"), per_page: $("#per-page")};
    Object.keys(controls).forEach(function (key) {
      var control = controls[key];
      if (!control) { return; }
      if (control.tagName === "SELECT" && view[key] !== "" &&
          !Array.prototype.some.call(control.options, function (o) { return o.value === view[key]; })) {
        control.appendChild(element("option", {value: view[key]}, view[key]));  // ?per_page=10: show 10, not blank
      }
      control.value = view[key];
      control.addEventListener(key === "q" ? "input" : "change", function () {
        window.clearTimeout(control.pending);
        control.pending = window.setTimeout(function () {
          view[key] = control.value;
          view.page = "1";
          load();
        }, key === "q" ? 300 : 0);
      });
    });
    var last = null;
    $("#prev").addEventListener("click", function () {
      if (last && last.page > 1) { view.page = String(last.page - 1); load(); }
    });
    $("#next").addEventListener("click", function () {
      if (last && last.page < last.pages) { view.page = String(last.page + 1); load(); }
    });

    function query() {
      var out = new URLSearchParams();
      Object.keys(view).forEach(function (key) {
        if (view[key] !== "" && !(key === "order" && !view.sort)) { out.set(key, view[key]); }
      });
      return out.toString();
    }

    function header(data) {
      var head = $("thead", table);
      head.textContent = "";
      var row = element("tr");
      data.columns.forEach(function (column) {
        var th = element("th", {"data-column": column, title: "sort by " + column}, column);
        if (data.hyperparameters.indexOf(column) >= 0 || column === "split" || column === "state") {
          th.classList.add("text");
        }
        if (data.sort === column) { th.classList.add(data.order === "desc" ? "sorted-desc" : "sorted-asc"); }
        th.addEventListener("click", function () {
          if (view.sort === column) { view.order = view.order === "asc" ? "desc" : "asc"; }
          else { view.sort = column; view.order = "asc"; }
          view.page = "1";
          load();
        });
        row.appendChild(th);
      });
      head.appendChild(row);
    }

    function rows(data) {
      var body = $("tbody", table);
      body.textContent = "";
      var metrics = {};
      data.metrics.forEach(function (name) { metrics[name] = true; });
      data.rows.forEach(function (record) {
        var row = element("tr", {"data-job-id": String(record.job_id)});
        data.columns.forEach(function (column) {
          var value = record[column];
          var cell = element("td");
          if (column === "job_id") {
            cell.appendChild(element("a", {href: "/job/" + record.job_id}, String(record.job_id)));
          } else if (metrics[column]) {
            cell.textContent = formatNumber(value, 4);
          } else if (column === "seconds") {
            cell.textContent = formatNumber(value, 2);
          } else {
            cell.textContent = formatValue(value);
            if (typeof value === "string") { cell.classList.add("text"); }
          }
          row.appendChild(cell);
        });
        body.appendChild(row);
      });
    }

    function load() {
      var search = query();
      window.history.replaceState(null, "", search ? "?" + search : window.location.pathname);
      var error = $("#jobs-error");
      table.setAttribute("data-loading", "true");
      return getJSON(table.getAttribute("data-api") + (search ? "?" + search : "")).then(function (data) {
        last = data;
        error.textContent = "";
        header(data);
        rows(data);
        $("#page-info").textContent = "page " + data.page + " of " + data.pages + " · " + data.total + " rows";
        $("#prev").disabled = data.page <= 1;
        $("#next").disabled = data.page >= data.pages;
        table.setAttribute("data-total", String(data.total));
        table.setAttribute("data-page", String(data.page));
      }).catch(function (failure) {
        error.textContent = failure.message;
      }).then(function () { table.removeAttribute("data-loading"); });
    }

    // the best job: a link and its score, or "none yet"
    function setBest(best) {
      var cell = $("#best");
      if (!cell) { return; }
      var id = best ? String(best.job_id) : "";
      if (cell.getAttribute("data-job-id") === id && (!best || cell.getAttribute("data-value") === String(best.value))) {
        return;
      }
      cell.setAttribute("data-job-id", id);
      cell.textContent = "";
      if (!best) { cell.textContent = "none yet"; return; }
      cell.setAttribute("data-value", String(best.value));
      cell.appendChild(element("a", {id: "best-job", href: "/job/" + best.job_id}, id));
      cell.appendChild(document.createTextNode(" (" + formatNumber(best.value, 4) + ")"));
    }

    // the charts follow the jobs: redrawn after a change, at most every CHART_REFRESH_MS
    var chartsDrawnAt = Date.now();
    var chartsStale = false;

    function refreshCharts() {
      if (!chartsStale || document.hidden || Date.now() - chartsDrawnAt < CHART_REFRESH_MS) { return null; }
      chartsStale = false;
      chartsDrawnAt = Date.now();
      return drawCharts();
    }

    function poll() {
      getJSON(summary.getAttribute("data-api")).then(function (data) {
        $all("[data-state]", summary).forEach(function (span) {
          var count = $(".n", span);
          if (count) { count.textContent = String(data.counts[span.getAttribute("data-state")] || 0); }
        });
        setProgress($("#queue-progress"), data.done, data.total);
        setBest(data.best);
        if (data.version !== summary.getAttribute("data-version")) {
          summary.setAttribute("data-version", data.version);
          chartsStale = true;
          return Promise.all([load(), refreshCharts()]);
        }
        return refreshCharts();
      }).catch(function () { /* the next poll tries again */ }).then(function () {
        window.setTimeout(poll, POLL_MS);
      });
    }

    load();
    if (summary) { window.setTimeout(poll, POLL_MS); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    initQueues();
    initQueue();
    drawCharts();
  });
}());
