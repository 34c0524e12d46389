// The focused review view: one sample large, decided by keyboard without waiting for Python.
//
// Python sends a window of the frozen queue around its cursor (images included, so the next ones are
// already decoded); a key shows the next sample at once and appends an event to `pending`, which goes
// back whole with setStateValue. Python records every event newer than the last it acknowledged
// (`ack`), so events sent while a rerun is in flight are never lost, and never recorded twice.

const KEYS_NEXT = new Set(["ArrowRight", "l", "L"]);
const KEYS_PREVIOUS = new Set(["ArrowLeft", "j", "J"]);
const KEEP_AROUND = 80;   // cached samples either side of the current one

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.appendChild(child);
  return node;
}

function build(parent) {
  const root = element("div", { class: "csl-focus", "data-testid": "focus-view" });
  root.innerHTML = `
    <div class="main">
      <div class="stage"><img class="big" alt="the sample under review"><span class="loading"></span></div>
      <div class="side">
        <div class="where"></div>
        <div class="likely"></div>
        <div class="status" aria-live="polite"></div>
        <div class="name"></div>
        <div class="labels"></div>
        <div><span class="badge decision"></span></div>
        <h4>Loss per epoch</h4>
        <svg class="trajectory" viewBox="0 0 300 96" preserveAspectRatio="none"></svg>
        <div class="legend">solid: this sample · dashed: its given class's average</div>
        <h4>Nearest neighbours</h4>
        <div class="neighbours"></div>
        <div class="classes"></div>
        <div class="actions"></div>
      </div>
    </div>`;
  const actions = root.querySelector(".actions");
  for (const [key, text, name] of [["a", "accept suggested", "accept"], ["k", "keep", "keep"], ["d", "drop", "drop"],
                                   ["j", "previous", "previous"], ["l", "next", "next"], ["u", "undo", "undo"]]) {
    const button = element("button", { type: "button", "data-key": key, title: `${text} (key ${key.toUpperCase()})` });
    button.append(element("kbd", { text: key.toUpperCase() }), document.createTextNode(text));
    button.dataset.action = name;
    actions.appendChild(button);
  }
  const relabel = element("select", { class: "relabel", title: "Relabel to any class (keys 0-9 for the first ten)",
                                      "aria-label": "Relabel to" });
  actions.appendChild(relabel);
  parent.appendChild(root);
  return root;
}

function fillRelabel(root, classes) {
  const select = root.querySelector("select.relabel");
  if (select.options.length === classes.length + 1) return;
  select.innerHTML = "";
  select.appendChild(element("option", { value: "", text: "relabel to…" }));
  classes.forEach((name, c) => select.appendChild(element("option", { value: String(c), text: `${c}: ${name}` })));
}

function decisionOf(state, item) {
  const local = state.local.get(item.pos);
  if (local) return { action: local.action, text: local.text, pending: true };
  return { action: item.action, text: item.decision, pending: false };
}

function drawTrajectory(svg, loss, classLoss) {
  const all = [...loss, ...classLoss].filter(Number.isFinite);
  const top = Math.max(1e-6, ...all);
  const line = (values) => values.map((v, i) => {
    const x = values.length > 1 ? (i / (values.length - 1)) * 296 + 2 : 150;
    const y = 92 - (Math.max(0, v) / top) * 86;
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  }).join(" ");
  svg.innerHTML = `<polyline points="${line(classLoss)}" fill="none" stroke="currentColor" stroke-opacity="0.55"
    stroke-dasharray="5 4" stroke-width="1.5" vector-effect="non-scaling-stroke"/>
    <polyline points="${line(loss)}" fill="none" stroke="var(--st-primary-color)" stroke-width="2.5"
    vector-effect="non-scaling-stroke"/>`;
}

// What this view's decisions still on their way change in the counts Python sent (each changes both the
// run's count and the queue's).
function pendingChange(state) {
  let change = 0;
  for (const [pos, local] of state.local) {
    const item = state.cache.get(pos);
    if (item) change += (local.action !== "undecided") - (item.action !== "undecided");
  }
  return change;
}

// "N of M decided": the run's decisions (its decision log, every page and tab), then where this view is in
// its queue and how many of the queue are decided.
function whereText(state) {
  const data = state.data;
  const change = pendingChange(state);
  const run = `${Math.max(0, (data.run_decided || 0) + change).toLocaleString()} of ` +
              `${(data.samples || 0).toLocaleString()} decided in this run`;
  if (!data.total) return `${run} · the queue is empty: change the filters above.`;
  const decided = Math.max(0, (data.decided || 0) + change).toLocaleString();
  if (data.audit) {
    return `Audit: ${decided} of ${data.total.toLocaleString()} answered · question ${(state.pos + 1).toLocaleString()}` +
           ` · ${run}`;
  }
  return `${run} · this queue: ${(state.pos + 1).toLocaleString()} of ${data.total.toLocaleString()}, ` +
         `${decided} decided`;
}

// The run's one count (the person's decisions included: it follows each answer), and in a ranked queue where the
// likely mislabeled ones end and which side of it this is.
function likelyText(state) {
  const likely = state.data.likely;
  if (!likely || !state.data.total) return ["", ""];
  const count = `the run's count: ${likely.text}`;
  if (state.data.audit) return ["count", `The run's count: ${likely.text}.`];
  if (!likely.count) return ["past", `No likely mislabeled sample: ${count}.`];
  if (!likely.end) return ["past", `None of this queue is among the likely mislabeled ones · ${count}.`];
  if (state.pos < likely.end) {
    return ["within", `Likely mislabeled: ${state.pos + 1} of the first ${likely.end.toLocaleString()} · ${count}`];
  }
  return ["past", `Past the likely mislabeled ones (the first ${likely.end.toLocaleString()}): most labels from ` +
                  `here on are right · ${count}.`];
}

function show(state) {
  const root = state.root;
  const data = state.data;
  const item = state.cache.get(state.pos);
  const image = root.querySelector("img.big");
  const loading = root.querySelector(".loading");
  root.querySelector(".where").textContent = whereText(state);
  root.classList.toggle("read-only", Boolean(data.read_only));
  const [side, text] = likelyText(state);
  const likely = root.querySelector(".likely");
  likely.textContent = text;
  likely.className = `likely ${side}`;
  root.querySelector(".status").textContent = state.message;
  if (!item) {
    image.style.visibility = "hidden";
    loading.textContent = data.total ? "loading..." : "";
    for (const selector of [".name", ".labels", ".neighbours"]) root.querySelector(selector).textContent = "";
    root.querySelector(".decision").textContent = "";
    return;
  }
  loading.textContent = "";
  image.style.visibility = "visible";
  image.dataset.pos = String(item.pos);
  image.dataset.index = String(item.index);
  const started = state.keyTime;
  state.keyTime = null;
  const shown = () => {
    if (started == null) return;
    requestAnimationFrame(() => {
      performance.measure("csl-focus-key-to-image", { start: started, end: performance.now() });
    });
  };
  if (!item.image) {
    image.style.visibility = "hidden";
    loading.textContent = item.image === "" ? "image not available" : "loading...";
  } else if (image.getAttribute("src") !== item.image) {
    image.onload = () => image.classList.toggle("photo", image.naturalWidth > 128);
    image.src = item.image;
    image.decode().then(shown, shown);
  } else {
    shown();
  }
  root.querySelector(".name").textContent = item.name;
  const classes = data.classes;
  const labels = root.querySelector(".labels");
  labels.innerHTML = "";
  labels.append("given ", element("b", { text: classes[item.given] }));
  if (item.suggested !== null) {
    const differs = item.suggested !== item.given;
    const suggested = element("b", { text: classes[item.suggested], class: differs ? "differs" : "" });
    labels.append(" · suggested ", suggested, ` (${Math.round(item.probability * 100)}%)`);
  }
  if (item.p_wrong !== null && item.p_wrong !== undefined) {
    labels.append(" · ", element("span", { class: "p-wrong", text: `p(wrong) ${item.p_wrong.toFixed(2)}`,
                                           title: "the model's probability that the given label is wrong" }));
  }
  labels.append(element("br"), `${data.score_label} ${item.score_text} · CSL rank #${item.rank}`);
  const decision = decisionOf(state, item);
  const badge = root.querySelector(".decision");
  badge.textContent = decision.text;
  badge.className = `badge decision ${decision.action}${decision.pending ? " pending" : ""}`;
  drawTrajectory(root.querySelector("svg.trajectory"), item.loss, item.class_loss);
  const neighbours = root.querySelector(".neighbours");
  neighbours.innerHTML = "";
  if (!(item.neighbours || []).length) neighbours.textContent = data.neighbours_note;
  for (const n of item.neighbours || []) {
    const caption = element("figcaption", { text: classes[n.label], title: classes[n.label],   // whole on hover
                                            class: n.label !== item.given ? "differs" : "" });
    neighbours.appendChild(element("figure", { title: `similarity ${n.similarity.toFixed(3)}` },
                                   [element("img", { src: n.image, alt: classes[n.label] }), caption]));
  }
  const legend = root.querySelector(".classes");
  legend.innerHTML = "";
  classes.slice(0, 10).forEach((name, c) => {
    const cls = c === item.given ? "given" : (c === item.suggested ? "suggested" : "");
    legend.appendChild(element("span", { class: cls }, [element("kbd", { text: String(c) }),
                                                          document.createTextNode(name)]));
  });
}

function send(state, event) {
  state.seq += 1;
  event.seq = state.seq;
  event.cursor = state.pos;
  state.pending.push(event);
  // The positions whose image this view holds: Python sends only the others.
  const have = [...state.cache.values()].filter((item) => item.image).map((item) => item.pos);
  state.setStateValue("events", { queue: state.queue, list: state.pending, have });
}

function move(state, step) {
  const target = Math.min(Math.max(0, state.pos + step), Math.max(0, state.data.total - 1));
  if (target === state.pos) {
    state.message = step > 0 ? "This is the last sample of the queue." : "This is the first sample.";
    return false;
  }
  state.pos = target;
  return true;
}

// A read-only run takes no decision: the key neither records nor advances, and the status says why.
function refused(state) {
  if (!state.data.read_only) return false;
  state.message = state.data.read_only;
  return true;
}

function decide(state, action, label) {
  const item = state.cache.get(state.pos);
  if (!item || refused(state)) return;
  const classes = state.data.classes;
  let text = action === "keep" ? "kept" : "dropped";
  if (action === "relabel") {
    text = label === item.given ? "kept" : `relabeled to ${classes[label]}`;
  }
  state.local.set(item.pos, { action: label === item.given ? "keep" : action, text, seq: state.seq + 1 });
  state.history.push(item.pos);
  const decidedPos = item.pos;
  move(state, 1);
  state.message = `${classes[item.given]} → ${text} (sample ${decidedPos + 1})`;
  send(state, { kind: "decide", action, label, index: item.index, pos: decidedPos });
}

function onKey(state, event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
  const target = event.composedPath()[0];
  if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
  if (!state.root.isConnected) return;
  const key = event.key;
  const item = state.cache.get(state.pos);
  state.keyTime = event.timeStamp;
  state.message = "";
  if (KEYS_NEXT.has(key) || KEYS_PREVIOUS.has(key)) {
    if (move(state, KEYS_NEXT.has(key) ? 1 : -1)) send(state, { kind: "move" });
  } else if (key === "a" || key === "A") {
    if (!item || item.suggested === null) return;
    decide(state, "relabel", item.suggested);
  } else if (key === "k" || key === "K") {
    decide(state, "keep", null);
  } else if (key === "d" || key === "D") {
    decide(state, "drop", null);
  } else if (/^[0-9]$/.test(key)) {
    const label = Number(key);
    if (label >= state.data.classes.length) {
      state.message = `There is no class ${label}.`;
    } else {
      decide(state, "relabel", label);
    }
  } else if (key === "u" || key === "U") {
    if (refused(state)) {
      // nothing to take back: nothing was recorded
    } else if (!state.history.length) {
      state.message = "Nothing to undo from this view.";
    } else {
      state.pos = state.history.pop();
      const undone = state.local.get(state.pos) || state.cache.get(state.pos) || {};
      const what = undone.text || undone.decision || "the decision";
      state.local.set(state.pos, { action: "undecided", text: "undone", seq: state.seq + 1 });
      state.message = `undid: ${what} (sample ${state.pos + 1})`;
      send(state, { kind: "undo" });
    }
  } else {
    state.keyTime = null;
    return;
  }
  event.preventDefault();
  show(state);
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let state = parentElement.__cslFocus;
  if (!state || state.queue !== data.queue) {
    state = { queue: data.queue, pos: data.cursor, seq: data.ack, pending: [], cache: new Map(),
              local: new Map(), history: [], message: "", keyTime: null, root: null };
    parentElement.__cslFocus = state;
    // A queue picked with the mouse (Focused review's Queue choice) leaves its radio focused, where the keys would
    // not reach the view and the arrows would pick another queue: the new queue takes the keys.
    const active = document.activeElement;
    if (active && active.tagName === "INPUT" && active.type === "radio") active.blur();
  }
  state.setStateValue = setStateValue;
  state.root = parentElement.querySelector(".csl-focus") || build(parentElement);
  state.data = data;
  state.seq = Math.max(state.seq, data.ack);
  state.pending = state.pending.filter((e) => e.seq > data.ack);
  for (const [pos, local] of state.local) if (local.seq <= data.ack) state.local.delete(pos);
  let missing = false;
  for (const item of data.items) {
    const known = state.cache.get(item.pos);
    if (item.image === null && known && known.index === item.index) {   // sent before
      item.image = known.image;
      item.neighbours = known.neighbours;
    }
    if (item.image === null) missing = true;     // Python thinks this view holds it: a fresh view does not
    state.cache.set(item.pos, item);
    if (!item.image) continue;
    const preload = new Image();
    preload.src = item.image;
    preload.decode().catch(() => {});
  }
  for (const pos of state.cache.keys()) if (Math.abs(pos - state.pos) > KEEP_AROUND) state.cache.delete(pos);
  if (data.error) state.message = data.error;
  if (missing && !state.asked) send(state, { kind: "move" });   // reports what it holds; the rest comes
  state.asked = missing;
  show(state);

  fillRelabel(state.root, data.classes);
  // Streamlit calls the cleanup a render returns only when the view goes away, not before the next render: the
  // handlers are added once per view and act on its current state, so that a key or a click is handled once, by
  // the queue on screen (a new queue, from the filters or the audit, included).
  let handlers = parentElement.__cslFocusHandlers;
  if (!handlers) {
    const current = () => parentElement.__cslFocus;
    handlers = {
      keydown: (event) => onKey(current(), event),
      change: (event) => {
        const select = event.target.closest("select.relabel");
        if (!select || select.value === "") return;
        const now = current();
        now.keyTime = performance.now();
        decide(now, "relabel", Number(select.value));
        select.value = "";
        select.blur();
        show(now);
      },
      click: (event) => {
        const button = event.target.closest("button[data-key]");
        if (!button) return;
        onKey(current(), new KeyboardEvent("keydown", { key: button.dataset.key }));
      },
    };
    parentElement.__cslFocusHandlers = handlers;
    document.addEventListener("keydown", handlers.keydown);
    parentElement.addEventListener("click", handlers.click);
    parentElement.addEventListener("change", handlers.change);
  }
  return () => {
    document.removeEventListener("keydown", handlers.keydown);
    parentElement.removeEventListener("click", handlers.click);
    parentElement.removeEventListener("change", handlers.change);
    delete parentElement.__cslFocusHandlers;
  };
}
