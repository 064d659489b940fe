// aerec web page: search titles, rate them, watch the top 10 update.
// Plain JavaScript, no build step, no external requests: everything goes to this server's API.
"use strict";

(() => {
  const TOP_K = 10;
  const SEARCH_LIMIT = 8;
  const STORAGE_KEY = "aerec.ratings.v1";

  const $ = (id) => document.getElementById(id);
  const els = {
    modelInfo: $("model-info"),
    searchForm: $("search-form"),
    searchInput: $("search-input"),
    searchError: $("search-error"),
    searchResults: $("search-results"),
    ratingsList: $("ratings-list"),
    ratingsEmpty: $("ratings-empty"),
    ratingsCount: $("ratings-count"),
    clearRatings: $("clear-ratings"),
    recsPanel: $("recs-panel"),
    recsList: $("recs-list"),
    recsNote: $("recs-note"),
    recsError: $("recs-error"),
  };

  const state = {
    scale: { minimum: 1, maximum: 5, step: 1 },
    // movie_id -> {movie_id, title, year, rating}; insertion order = order rated
    ratings: new Map(),
    searchItems: [],
    searchSeq: 0,
    recsSeq: 0,
    searchAbort: null,
    recsAbort: null,
  };

  // ---------------------------------------------------------------------------- helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function debounce(fn, ms) {
    let timer = null;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  function movieLabel(movie) {
    const year = movie.year ? ` (${movie.year})` : "";
    return String(movie.title).endsWith(year) ? String(movie.title) : `${movie.title}${year}`;
  }

  function fmtNumber(n) {
    return Number(n).toLocaleString("en-US");
  }

  function fmtStars(value) {
    const step = state.scale.step;
    return Number.isInteger(step) && Number.isInteger(value) ? String(value) : value.toFixed(1);
  }

  function showError(node, message) {
    node.textContent = message || "";
    node.hidden = !message;
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new Error("The server cannot be reached. Is `aerec serve` still running?");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_err) {
      body = null;
    }
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : `HTTP ${response.status}`;
      const error = new Error(detail);
      error.status = response.status;
      error.body = body;
      throw error;
    }
    return body;
  }

  // ---------------------------------------------------------------------------- storage

  function saveRatings() {
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify([...state.ratings.values()]));
    } catch (_err) {
      /* private mode: ratings just do not persist */
    }
  }

  function loadRatings() {
    try {
      const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "[]");
      for (const r of saved) {
        if (r && Number.isFinite(r.movie_id) && Number.isFinite(r.rating)) {
          state.ratings.set(r.movie_id, r);
        }
      }
    } catch (_err) {
      state.ratings.clear();
    }
  }

  // ---------------------------------------------------------------------------- stars

  function useStars() {
    const { minimum, maximum, step } = state.scale;
    return minimum >= 0 && maximum <= 10 && (step === 1 || step === 0.5);
  }

  function scaleValues() {
    const { minimum, maximum, step } = state.scale;
    const values = [];
    for (let v = minimum; v <= maximum + 1e-9; v += step) values.push(Math.round(v * 100) / 100);
    return values;
  }

  // A rating control for one movie: star buttons (half stars when the scale has them), or a
  // number field for scales that stars do not suit (e.g. 1–100).
  function ratingControl(movie, current, { compact = false } = {}) {
    const label = `Rate ${movieLabel(movie)}`;
    if (!useStars()) return numberControl(movie, current, label);

    const group = el("div", {
      class: compact ? "stars compact" : "stars",
      role: "group",
      "aria-label": label,
    });
    const { minimum, maximum, step } = state.scale;
    const allowed = new Set(scaleValues());
    const starNodes = [];

    const paint = (value) => {
      starNodes.forEach((star, i) => {
        const n = i + 1;
        star.classList.toggle("full", value >= n);
        star.classList.toggle("half", value >= n - 0.5 && value < n);
      });
    };

    for (let n = 1; n <= Math.ceil(maximum); n++) {
      const star = el("span", { class: "star" });
      const parts = (step === 0.5 ? [n - 0.5, n] : [n]).filter(
        (value) => allowed.has(value) && value >= minimum,
      );
      for (const value of parts) {
        const side = parts.length === 1 ? "" : value === n ? " right" : " left";
        const word = value === 1 ? "star" : "stars";
        const button = el("button", {
          type: "button",
          class: `star-hit${side}`,
          "aria-label": `${fmtStars(value)} ${word}`,
          "aria-pressed": current === value ? "true" : "false",
          title: `${fmtStars(value)} ${word}`,
          "data-value": value,
          onclick: () => rate(movie, value),
          onmouseenter: () => paint(value),
          onfocus: () => paint(value),
          onblur: () => paint(current || 0),
        });
        star.append(button);
      }
      star.append(el("span", { class: "glyph", "aria-hidden": "true", text: "★" }));
      starNodes.push(star);
      group.append(star);
    }
    group.addEventListener("mouseleave", () => paint(current || 0));
    paint(current || 0);
    // always present (empty when unrated) so rating a movie does not shift the stars
    const rated = current !== undefined && current !== null;
    group.append(el("span", { class: "star-value", text: rated ? fmtStars(current) : "" }));
    return group;
  }

  function numberControl(movie, current, label) {
    const { minimum, maximum, step } = state.scale;
    const id = `rate-${movie.movie_id}-${Math.random().toString(36).slice(2, 8)}`;
    const input = el("input", {
      id, type: "number", min: minimum, max: maximum, step, value: current ?? "",
      class: "rating-number",
    });
    const form = el(
      "form",
      {
        class: "rating-form",
        onsubmit: (event) => {
          event.preventDefault();
          const value = Number(input.value);
          if (input.value === "" || !Number.isFinite(value)) return;
          rate(movie, value);
        },
      },
      el("label", { for: id, class: "visually-hidden", text: label }),
      input,
      el("button", { type: "submit", class: "small-button", text: "Rate" }),
    );
    return form;
  }

  // ---------------------------------------------------------------------------- actions

  function rate(movie, value) {
    const key = Number(movie.movie_id);
    const existing = state.ratings.get(key);
    const entry = {
      movie_id: key,
      title: movie.title,
      year: movie.year || null,
      rating: value,
    };
    if (existing) state.ratings.set(key, entry);
    else state.ratings = new Map([[key, entry], ...state.ratings]); // newest first
    ratingsChanged();
  }

  function removeRating(movieId) {
    state.ratings.delete(movieId);
    ratingsChanged();
  }

  function ratingsChanged() {
    saveRatings();
    renderRatings();
    renderSearch();
    refreshRecommendations();
  }

  // ---------------------------------------------------------------------------- rendering

  function movieLine(movie, meta) {
    return el(
      "div",
      { class: "movie-text" },
      el("span", { class: "title", text: movie.title }),
      movie.year ? el("span", { class: "year", text: ` (${movie.year})` }) : null,
      meta ? el("span", { class: "meta", text: meta }) : null,
    );
  }

  function renderSearch() {
    els.searchResults.replaceChildren(
      ...state.searchItems.map((movie) => {
        const current = state.ratings.get(Number(movie.movie_id));
        const parts = [];
        if (Number.isFinite(movie.n_ratings)) parts.push(`${fmtNumber(movie.n_ratings)} ratings`);
        if (Number.isFinite(movie.mean_rating) && movie.n_ratings > 0) {
          parts.push(`mean ${movie.mean_rating.toFixed(2)}`);
        }
        return el(
          "li",
          { class: current ? "movie rated" : "movie", "data-movie-id": movie.movie_id },
          movieLine(movie, parts.join(" · ")),
          ratingControl(movie, current ? current.rating : null),
        );
      }),
    );
  }

  function renderRatings() {
    const items = [...state.ratings.values()];
    els.ratingsEmpty.hidden = items.length > 0;
    els.clearRatings.hidden = items.length === 0;
    els.ratingsCount.textContent = items.length ? `(${items.length})` : "";
    els.ratingsList.replaceChildren(
      ...items.map((r) =>
        el(
          "li",
          { class: "movie rated", "data-movie-id": r.movie_id },
          movieLine(r),
          ratingControl(r, r.rating),
          el("button", {
            type: "button",
            class: "remove",
            "aria-label": `Remove your rating of ${movieLabel(r)}`,
            title: "Remove rating",
            text: "Remove",
            onclick: () => removeRating(r.movie_id),
          }),
        ),
      ),
    );
  }

  function renderRecommendations(data) {
    const note = data.note || (data.fallback ? "Popular movies — rate a few to personalise." : "");
    els.recsNote.textContent = note;
    els.recsNote.hidden = !note;
    els.recsList.replaceChildren(
      ...data.items.map((item) => {
        const predicted = Number.isFinite(item.predicted_rating)
          ? el("span", {
              class: "predicted",
              title: "Predicted rating",
              text: `★ ${item.predicted_rating.toFixed(1)}`,
              "aria-label": `predicted ${item.predicted_rating.toFixed(1)} stars`,
            })
          : null;
        return el(
          "li",
          { class: "rec", "data-movie-id": item.movie_id },
          el(
            "div",
            { class: "rec-head" },
            el(
              "span",
              { class: "rec-title" },
              el("span", { class: "title", text: item.title }),
              item.year ? el("span", { class: "year", text: ` (${item.year})` }) : null,
            ),
            predicted,
          ),
          item.reason ? el("p", { class: "reason", text: item.reason }) : null,
          el(
            "div",
            { class: "rec-rate" },
            el("span", { class: "rec-rate-label", text: "Seen it?" }),
            ratingControl(item, null, { compact: true }),
          ),
        );
      }),
    );
  }

  // ---------------------------------------------------------------------------- requests

  async function search(query) {
    const seq = ++state.searchSeq;
    if (state.searchAbort) state.searchAbort.abort();
    const q = query.trim();
    if (!q) {
      state.searchItems = [];
      showError(els.searchError, "");
      renderSearch();
      return;
    }
    state.searchAbort = new AbortController();
    try {
      const params = new URLSearchParams({ q, limit: String(SEARCH_LIMIT) });
      const data = await api(`/movies?${params}`, { signal: state.searchAbort.signal });
      if (seq !== state.searchSeq) return;
      state.searchItems = data.items;
      showError(els.searchError, data.items.length ? "" : `No title matches “${q}”.`);
      renderSearch();
    } catch (err) {
      if (err.name === "AbortError" || seq !== state.searchSeq) return;
      showError(els.searchError, err.message);
    }
  }

  async function loadRecommendations() {
    const seq = ++state.recsSeq;
    if (state.recsAbort) state.recsAbort.abort();
    state.recsAbort = new AbortController();
    els.recsPanel.setAttribute("aria-busy", "true");
    const ratings = [...state.ratings.values()].map((r) => ({
      movie_id: r.movie_id,
      rating: r.rating,
    }));
    try {
      const data = await api("/recommendations", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ratings, k: TOP_K }),
        signal: state.recsAbort.signal,
      });
      if (seq !== state.recsSeq) return;
      showError(els.recsError, "");
      renderRecommendations(data);
    } catch (err) {
      if (err.name === "AbortError" || seq !== state.recsSeq) return;
      showError(els.recsError, `Could not update the recommendations: ${err.message}`);
    } finally {
      if (seq === state.recsSeq) els.recsPanel.setAttribute("aria-busy", "false");
    }
  }

  const refreshRecommendations = debounce(loadRecommendations, 120);
  const searchSoon = debounce(search, 180);

  async function start() {
    loadRatings();
    renderRatings();
    try {
      const health = await api("/health");
      state.scale = health.model.scale;
      const { minimum, maximum, step } = state.scale;
      const users = health.model.n_users ? ` · ${fmtNumber(health.model.n_users)} users` : "";
      els.modelInfo.textContent =
        `Model: ${fmtNumber(health.model.n_movies)} movies${users} · ratings ` +
        `${minimum}–${maximum} in steps of ${step} · aerec ${health.version}`;
    } catch (err) {
      els.modelInfo.textContent = `Cannot read the model: ${err.message}`;
      els.modelInfo.classList.add("error");
    }
    renderRatings();
    els.searchInput.addEventListener("input", () => searchSoon(els.searchInput.value));
    els.searchForm.addEventListener("submit", (event) => {
      event.preventDefault();
      search(els.searchInput.value);
    });
    els.clearRatings.addEventListener("click", () => {
      state.ratings.clear();
      ratingsChanged();
    });
    loadRecommendations();
  }

  start();
})();
