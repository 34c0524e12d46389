// A dense thumbnail grid: as many columns as fit, icon actions on each card, click / shift-click
// selection with bulk actions, decided cards greyed with a badge, a large preview on hover.
// Every action goes back to Python as one trigger: {action, indices, label, nonce}.

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  return node;
}

function relabelSelect(classes, title, placeholder = "✎") {
  const select = element("select", { title, "aria-label": title, "data-act": "relabel" });
  select.appendChild(element("option", { value: "", text: placeholder }));
  classes.forEach((name, c) => select.appendChild(element("option", { value: String(c), text: `${c}: ${name}` })));
  return select;
}

function render(state) {
  const { data, root } = state;
  const classes = data.classes;
  root.style.setProperty("--card", `${data.size}px`);
  const present = new Set(data.items.map((item) => item.index));
  for (const index of [...state.selected]) if (!present.has(index)) state.selected.delete(index);

  const bar = root.querySelector(".bar");
  bar.innerHTML = "";
  const count = state.selected.size;
  if (!count) {
    bar.append(element("span", { class: "hint", text: "Click images to select, shift-click for a range." }));
    bar.appendChild(element("button", { type: "button", "data-bulk": "all", text: "Select all" }));
  } else {
    bar.append(element("span", { text: `${count} selected:` }));
    for (const [action, text] of [["accept", "Accept suggested"], ["keep", "Keep"], ["drop", "Drop"]]) {
      bar.appendChild(element("button", { type: "button", "data-bulk": action, text }));
    }
    const select = relabelSelect(classes, "Relabel the selected samples to", "Relabel to…");
    select.dataset.bulk = "relabel";
    bar.appendChild(select);
    bar.appendChild(element("button", { type: "button", "data-bulk": "all", text: "All" }));
    bar.appendChild(element("button", { type: "button", "data-bulk": "none", text: "Clear" }));
  }

  const cards = root.querySelector(".cards");
  cards.innerHTML = "";
  if (!data.items.length) cards.appendChild(element("div", { class: "empty", text: data.empty }));
  for (const item of data.items) {
    const decided = item.action !== "undecided";
    const card = element("div", { class: `card${decided ? " decided" : ""}${state.selected.has(item.index) ? " selected" : ""}`,
                                   "data-index": String(item.index), "data-testid": "grid-card" });
    const image = element("img", { alt: `sample ${item.name}`, src: item.image || "" });
    if (item.photo) image.classList.add("photo");
    card.appendChild(element("div", { class: "thumb", title: item.name }, [image]));
    const meta = element("div", { class: "meta" });
    meta.title = `CSL rank #${item.rank} · CSL ${item.csl} · ${item.name}`;
    // Every word readable at any class name length: the given label on the first line, the suggestion (what
    // the accept icon applies) and its probability on the next, each wrapping rather than cut.
    meta.append(element("div", { class: "given" }, [`#${item.rank} · `, element("b", { text: classes[item.given] })]));
    if (item.suggested !== null && item.suggested !== item.given) {
      meta.append(element("div", { class: "suggested" }, [
        "→ ", element("span", { class: "differs", text: classes[item.suggested] }), " ",
        element("span", { class: "probability", text: `${Math.round(item.probability * 100)}%` })]));
    }
    card.appendChild(meta);
    if (decided) card.appendChild(element("span", { class: `badge ${item.action}`, text: item.decision }));
    const icons = element("div", { class: "icons" });
    const suggestion = item.suggested !== null ? classes[item.suggested] : "";
    icons.append(
      element("button", { type: "button", "data-act": "accept", title: `Accept the suggested label (${suggestion})`,
                          "aria-label": "Accept suggested", text: "↻" }),
      element("button", { type: "button", "data-act": "keep", title: "Keep (the label is right)",
                          "aria-label": "Keep", text: "✓" }),
      element("button", { type: "button", "data-act": "drop", title: "Drop from the data set",
                          "aria-label": "Drop", text: "✕" }),
      relabelSelect(classes, "Relabel to"));
    card.appendChild(icons);
    cards.appendChild(card);
  }
}

function send(state, action, indices, label = null) {
  if (!indices.length) return;
  state.nonce += 1;
  state.setTriggerValue("action", { action, indices, label, nonce: state.nonce });
}

function onClick(state, event) {
  const target = event.target;
  const card = target.closest(".card");
  const bulk = target.closest("button[data-bulk]");
  if (bulk) {
    const selected = [...state.selected];
    if (bulk.dataset.bulk === "all") state.data.items.forEach((item) => state.selected.add(item.index));
    else if (bulk.dataset.bulk === "none") state.selected.clear();
    else {
      state.selected.clear();
      send(state, bulk.dataset.bulk, selected);
    }
    render(state);
    return;
  }
  if (!card) return;
  const index = Number(card.dataset.index);
  const act = target.closest("button[data-act]");
  if (act) {
    send(state, act.dataset.act, [index]);
    return;
  }
  if (target.closest(".thumb")) {
    state.quiet = { x: event.clientX, y: event.clientY };
    hidePreview(state);
    const order = state.data.items.map((item) => item.index);
    if (event.shiftKey && state.anchor !== null && order.includes(state.anchor)) {
      const [from, to] = [order.indexOf(state.anchor), order.indexOf(index)].sort((a, b) => a - b);
      order.slice(from, to + 1).forEach((i) => state.selected.add(i));
    } else if (state.selected.has(index)) {
      state.selected.delete(index);
    } else {
      state.selected.add(index);
    }
    state.anchor = index;
    render(state);
  }
}

function onChange(state, event) {
  const select = event.target.closest("select[data-act='relabel']");
  if (!select || select.value === "") return;
  const label = Number(select.value);
  if (select.dataset.bulk) {
    const selected = [...state.selected];
    state.selected.clear();
    send(state, "relabel", selected, label);
  } else {
    send(state, "relabel", [Number(select.closest(".card").dataset.index)], label);
  }
  select.value = "";
}

function hidePreview(state) {
  state.root.querySelector(".preview").style.display = "none";
}

function onHover(state, event) {
  const preview = state.root.querySelector(".preview");
  const thumb = event.target.closest ? event.target.closest(".thumb") : null;
  // A click selects: the preview stays away (from that card and from the bulk actions the click just offered)
  // until the pointer really moves. The redraw after a click (the bar may grow a line and push the cards down)
  // puts another element under a pointer that has not moved: that is no reason to show it.
  if (state.quiet && Math.hypot(event.clientX - state.quiet.x, event.clientY - state.quiet.y) > 12) {
    state.quiet = null;
  }
  if (!thumb || state.quiet !== null) {
    hidePreview(state);
    return;
  }
  const source = thumb.querySelector("img");
  const image = preview.querySelector("img");
  image.src = source.src;
  image.classList.toggle("photo", source.classList.contains("photo"));
  const box = thumb.getBoundingClientRect();
  const left = box.right + 340 < window.innerWidth ? box.right + 8 : Math.max(8, box.left - 340);
  const bar = state.root.querySelector(".bar").getBoundingClientRect();
  // Never over the bulk-action bar: below it when it is on screen.
  const floor = bar.bottom > 0 && bar.top < window.innerHeight ? bar.bottom + 4 : 8;
  preview.style.left = `${left}px`;
  preview.style.top = `${Math.max(floor, Math.min(box.top, window.innerHeight - 340))}px`;
  preview.style.display = "block";
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let state = parentElement.__cslGrid;
  if (!state) {
    const root = element("div", { class: "csl-grid", "data-testid": "thumbnail-grid" },
                         [element("div", { class: "bar" }), element("div", { class: "cards" }),
                          element("div", { class: "preview" }, [element("img", { alt: "" })])]);
    parentElement.appendChild(root);
    state = { root, selected: new Set(), anchor: null, nonce: 0, quiet: null };
    parentElement.__cslGrid = state;
  }
  state.data = data;
  state.setTriggerValue = setTriggerValue;
  render(state);
  const click = (event) => onClick(state, event);
  const change = (event) => onChange(state, event);
  const hover = (event) => onHover(state, event);
  const leave = () => { state.quiet = null; hidePreview(state); };
  state.root.addEventListener("click", click);
  state.root.addEventListener("change", change);
  state.root.addEventListener("mouseover", hover);
  state.root.addEventListener("mouseleave", leave);
  return () => {
    state.root.removeEventListener("click", click);
    state.root.removeEventListener("change", change);
    state.root.removeEventListener("mouseover", hover);
    state.root.removeEventListener("mouseleave", leave);
  };
}
