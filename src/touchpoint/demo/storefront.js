// The Touchpoint demo storefront: plain JavaScript, no build step, no dependencies.
//
// It asks POST /v1/decide for the page's placements as the chosen visitor, with the public
// write key of a source that allows client-side decisions, renders each placement's `html`
// (the engine's rendered Liquid, HTML-escaped values) or its payload, and shows the content
// id and the `reason` beside it. Rendering sends `Decision Viewed`, a click in a placement
// `Decision Clicked` (and `Product Viewed` / `Product Added` for product cards), all through
// POST /v1/batch as that visitor. A visitor named by user id comes with the `user_hash` the
// shop's backend computed for them (/demo/visitors.json plays that backend): decide requests
// and events carry it, or the write key may name only the device.
// Everything else it inserts goes in as text, never markup.
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("tp-config").textContent);
  var REASONS = {
    eligible: "chosen by the placement's policy among the content this visitor is eligible for",
    fallback: "nothing was eligible for this visitor: the placement's fallback",
    no_consent: "this visitor said no to personalization: the fallback, rendered without their data",
    render_error: "the chosen content failed to render: the fallback instead",
    empty: "nothing to show, not even a fallback",
  };
  var NEW_VISITOR = "__new__";
  var REDECIDE_AFTER_MS = 400;

  var state = {
    placements: config.placements || [],
    visitors: [],
    visitor: null,
    decision: null,
    notes: {},
    categories: [],
    slots: {},
    cartId: "cart-" + randomId().slice(0, 12),
    timer: null,
  };

  function $(id) {
    return document.getElementById(id);
  }

  function randomId() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    var hex = "";
    for (var i = 0; i < 32; i++) hex += Math.floor(Math.random() * 16).toString(16);
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-4" + hex.slice(13, 16) + "-a" +
      hex.slice(17, 20) + "-" + hex.slice(20, 32);
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function status(text, isError) {
    var node = $("status");
    node.textContent = text;
    node.className = isError ? "status error" : "status";
  }

  function request(method, path, body) {
    var headers = { "content-type": "application/json" };
    if (config.writeKey) headers.authorization = "Basic " + btoa(config.writeKey + ":");
    return fetch(path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    }).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try {
          data = text ? JSON.parse(text) : null;
        } catch (ignored) {
          data = null;
        }
        if (!response.ok) {
          var message = data && data.error && data.error.message ? data.error.message : text;
          throw new Error(method + " " + path + ": HTTP " + response.status + " " + message);
        }
        return data;
      });
    });
  }

  function identity() {
    var visitor = state.visitor;
    return visitor.kind === "user_id" ? { userId: visitor.value } : { anonymousId: visitor.value };
  }

  function logEvent(text) {
    var list = $("events");
    list.insertBefore(element("li", "", new Date().toLocaleTimeString() + "  " + text), list.firstChild);
  }

  function send(events) {
    if (!events.length || !state.visitor) return Promise.resolve();
    var who = identity();
    var batch = events.map(function (item) {
      var message = {
        type: "track",
        event: item.event,
        properties: item.properties,
        context: { page: { path: "/demo", url: window.location.href } },
      };
      if (state.visitor.user_hash) message.context.user_hash = state.visitor.user_hash;
      Object.keys(who).forEach(function (key) {
        message[key] = who[key];
      });
      return message;
    });
    return request("POST", "/v1/batch", { batch: batch }).then(function () {
      events.forEach(function (item) {
        var props = item.properties;
        logEvent(item.event + "  " + (props.placement || props.category || "") + "  " +
          (props.content_id || props.name || ""));
      });
    });
  }

  function decideLater() {
    window.clearTimeout(state.timer);
    state.timer = window.setTimeout(decide, REDECIDE_AFTER_MS);
  }

  function buildSlots() {
    var container = $("placements");
    container.textContent = "";
    state.placements.forEach(function (name) {
      var section = element("section", "placement");
      var head = element("div", "placement-head");
      var slot = {
        name: element("span", "placement-name", name),
        content: element("span", "content-id", "…"),
        reason: element("span", "reason", "…"),
        policy: element("span", "policy", ""),
        why: element("span", "why", ""),
        body: element("div", "placement-body"),
      };
      [slot.name, slot.content, slot.reason, slot.policy, slot.why].forEach(function (node) {
        head.appendChild(node);
      });
      section.appendChild(head);
      section.appendChild(slot.body);
      slot.body.addEventListener("click", function (event) {
        onPlacementClick(name, event);
      });
      container.appendChild(section);
      state.slots[name] = slot;
    });
  }

  function render(decision) {
    var results = decision.placements || {};
    state.placements.forEach(function (name) {
      var slot = state.slots[name];
      var result = results[name] || {};
      var reason = String(result.reason || "missing");
      slot.content.textContent = result.content_id || "(none)";
      slot.reason.textContent = reason;
      slot.reason.className = "reason reason-" + reason.replace(/[^a-z_]/g, "");
      slot.policy.textContent = result.policy ? "policy: " + result.policy : "";
      var note = result.content_id ? state.notes[result.content_id] : "";
      slot.why.textContent = (REASONS[reason] || reason) + (note ? ". Content rule: " + note : "");
      slot.body.textContent = "";
      if (typeof result.html === "string" && result.html) {
        // The engine's rendered Liquid: values are HTML-escaped by the engine, and the page's
        // Content-Security-Policy allows no inline script.
        slot.body.innerHTML = result.html;
      } else if (result.payload) {
        slot.body.appendChild(element("pre", "", JSON.stringify(result.payload, null, 2)));
      } else {
        slot.body.appendChild(element("p", "hint", "Nothing to show."));
      }
    });
    $("decision-json").textContent = JSON.stringify(decision, null, 2);
  }

  function decide() {
    if (!state.visitor) return Promise.resolve();
    if (!config.writeKey) {
      status("No source of this workspace allows client-side decisions " +
        "(allow_client_decisions: true), so this page cannot ask for any.", true);
      return Promise.resolve();
    }
    var body = {};
    body[state.visitor.kind] = state.visitor.value;
    if (state.visitor.user_hash) body.user_hash = state.visitor.user_hash;
    body.context = { page: { path: "/", url: window.location.href }, channel: "web" };
    body.placements = state.placements;
    var started = performance.now();
    status("Asking POST /v1/decide …");
    return request("POST", "/v1/decide", body).then(function (decision) {
      var took = Math.round(performance.now() - started);
      state.decision = decision;
      render(decision);
      status("Decision " + decision.decision_id + " in " + took + " ms (definitions version " +
        decision.definitions_version + ")");
      var views = [];
      state.placements.forEach(function (name) {
        var result = (decision.placements || {})[name];
        if (result && result.content_id) {
          views.push({ event: "Decision Viewed", properties: about(decision, name, result) });
        }
      });
      return send(views);
    }).catch(function (error) {
      status(error.message, true);
    });
  }

  function about(decision, name, result) {
    return { decision_id: decision.decision_id, placement: name, content_id: result.content_id };
  }

  function productOf(card) {
    return {
      product_id: card.getAttribute("data-product-id"),
      name: card.getAttribute("data-name"),
      category: card.getAttribute("data-category"),
      price: Number(card.getAttribute("data-price")),
    };
  }

  function productEvents(action, card, extra) {
    var product = productOf(card);
    if (action === "view") return [{ event: "Product Viewed", properties: product }];
    if (action === "add") {
      var added = Object.assign({}, product, extra || {}, { quantity: 1, cart_id: state.cartId });
      return [{ event: "Product Added", properties: added }];
    }
    return [];
  }

  function onPlacementClick(name, event) {
    var target = event.target.closest("[data-action], a");
    var decision = state.decision;
    var result = decision && decision.placements ? decision.placements[name] : null;
    if (!target || !result || !result.content_id) return;
    event.preventDefault();
    var context = about(decision, name, result);
    var events = [{ event: "Decision Clicked", properties: context }];
    var card = target.closest("[data-product-id]");
    if (card) {
      // Adding to the cart from a placement carries the decision id: a conversion.
      events = events.concat(productEvents(target.getAttribute("data-action"), card, context));
    }
    send(events).then(decideLater).catch(function (error) {
      status(error.message, true);
    });
  }

  function productCard(product) {
    var card = element("div", "tp-card");
    card.setAttribute("data-product-id", product.product_id);
    card.setAttribute("data-name", product.name);
    card.setAttribute("data-category", product.category);
    card.setAttribute("data-price", String(product.price));
    card.appendChild(element("span", "tp-card-category", product.brand || product.category));
    var view = element("button", "tp-card-name", product.name);
    view.type = "button";
    view.setAttribute("data-action", "view");
    card.appendChild(view);
    card.appendChild(element("span", "tp-card-price", "$" + Number(product.price).toFixed(2)));
    var add = element("button", "tp-card-add", "Add to cart");
    add.type = "button";
    add.setAttribute("data-action", "add");
    card.appendChild(add);
    return card;
  }

  function showCategory(index) {
    var category = state.categories[index];
    var buttons = $("categories").querySelectorAll("button");
    Array.prototype.forEach.call(buttons, function (button, position) {
      button.setAttribute("aria-pressed", position === index ? "true" : "false");
    });
    var grid = $("products");
    grid.textContent = "";
    (category ? category.products : []).forEach(function (product) {
      grid.appendChild(productCard(product));
    });
  }

  function buildBrowse(categories) {
    state.categories = categories || [];
    var nav = $("categories");
    nav.textContent = "";
    state.categories.forEach(function (category, index) {
      var button = element("button", "", category.name);
      button.type = "button";
      button.addEventListener("click", function () {
        showCategory(index);
      });
      nav.appendChild(button);
    });
    showCategory(0);
    $("products").addEventListener("click", function (event) {
      var target = event.target.closest("[data-action]");
      var card = target ? target.closest("[data-product-id]") : null;
      if (!card) return;
      send(productEvents(target.getAttribute("data-action"), card)).then(decideLater)
        .catch(function (error) {
          status(error.message, true);
        });
    });
  }

  function buildPicker(visitors) {
    var select = $("visitor");
    select.textContent = "";
    select.appendChild(new Option("A brand-new visitor (no history)", NEW_VISITOR));
    var groups = {};
    visitors.forEach(function (visitor) {
      if (!groups[visitor.group]) {
        groups[visitor.group] = document.createElement("optgroup");
        groups[visitor.group].label = visitor.group;
        select.appendChild(groups[visitor.group]);
      }
      groups[visitor.group].appendChild(new Option(visitor.label, visitor.key));
    });
    select.addEventListener("change", function () {
      choose(select.value);
    });
    $("redecide").addEventListener("click", decide);
  }

  function choose(key) {
    var found = null;
    state.visitors.forEach(function (visitor) {
      if (visitor.key === key) found = visitor;
    });
    if (!found) {
      key = NEW_VISITOR;
      found = {
        key: NEW_VISITOR,
        label: "A brand-new visitor",
        kind: "anonymous_id",
        value: randomId(),
        description: "No history: an unknown person becomes a new anonymous profile, " +
          "so every placement shows what it shows strangers.",
      };
    }
    state.visitor = found;
    $("visitor").value = key;
    $("visitor-description").textContent = found.description + "  (" + found.kind + " " +
      found.value + ")";
    if (key !== NEW_VISITOR) window.history.replaceState(null, "", "#" + key);
    decide();
  }

  function start() {
    buildSlots();
    request("GET", "/demo/visitors.json").then(function (data) {
      state.visitors = data.visitors || [];
      if (data.placements && data.placements.length) {
        state.placements = data.placements;
        buildSlots();
      }
      (data.content || []).forEach(function (item) {
        state.notes[item.id] = item.description;
      });
      buildBrowse(data.catalog ? data.catalog.categories : []);
    }).catch(function (error) {
      status("No simulated visitors (" + error.message + "): run `touchpoint demo` first.", true);
    }).then(function () {
      buildPicker(state.visitors);
      var wanted = window.location.hash.slice(1);
      choose(wanted || (state.visitors[0] ? state.visitors[0].key : NEW_VISITOR));
    });
  }

  start();
})();
