// aerec web page: search titles, rate them, watch the top 10 update.
// Plain JavaScript, no build step, no external requests: everything goes to this server's API.
// The server renders the first view (the model's facts and the popular movies) into the page,
// so something useful shows before this script has run or any request has been answered.
"use strict";

(() => {
  const DEFAULT_K = 10;
  const SEARCH_LIMIT = 8;
  const STORAGE_KEY = "aerec.ratings.v1";
  const FILTERS_KEY = "aerec.filters.v1";
  // The same sentence as the server-rendered page (serve/routes/page.py), in plain words.
  const POPULAR_NOTE =
    "These are popular movies that most people rate highly, the same for everyone. " +
    "Rate a few movies you know to get a list of your own.";
  const NOTHING_PASSES =
    "No movie matches these filters. Try a wider range of years or a smaller number of ratings.";

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
    recsHeading: $("recs-heading"),
    recsOrder: $("recs-order"),
    filters: $("filters"),
    filtersError: $("filters-error"),
    filterK: $("filter-k"),
    filterYearMin: $("filter-year-min"),
    filterYearMax: $("filter-year-max"),
    filterMinRatings: $("filter-min-ratings"),
  };

  const state = {
    scale: { minimum: 1, maximum: 5, step: 1 },
    maxK: 100,
    // what the last /recommendations answer was, to paint again when the scale changes
    lastRecs: null,
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

  // " (1977)" for a movie whose title does not already end with its year, else "": some
  // catalogues (MovieLens) keep the year in the title, and "Star Wars (1977) (1977)" is noise.
  function yearSuffix(movie) {
    if (!movie.year) return "";
    return String(movie.title).trimEnd().endsWith(`(${movie.year})`) ? "" : ` (${movie.year})`;
  }

  function movieLabel(movie) {
    return `${movie.title}${yearSuffix(movie)}`;
  }

  // The title and, apart (it is shown muted), the year when the title lacks it.
  function titleParts(movie) {
    const year = yearSuffix(movie);
    return [
      el("span", { class: "title", text: movie.title }),
      year ? el("span", { class: "year", text: year }) : null,
    ];
  }

  function describeModel(model) {
    const { minimum, maximum, step } = model.scale;
    const steps = step === 1 ? "" : step === 0.5 ? " in half stars" : ` in steps of ${step}`;
    const people = model.n_users ? ` rated by ${fmtNumber(model.n_users)} people` : "";
    return `Knows ${fmtNumber(model.n_movies)} movies${people} · stars from ${minimum} to ` +
      `${maximum}${steps} · aerec ${model.version}`;
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
      ...titleParts(movie),
      meta ? el("span", { class: "meta", text: meta }) : null,
    );
  }

  function renderSearch() {
    els.searchResults.replaceChildren(
      ...state.searchItems.map((movie) => {
        const current = state.ratings.get(Number(movie.movie_id));
        const parts = [];
        if (Number.isFinite(movie.n_ratings)) {
          parts.push(`rated by ${fmtNumber(movie.n_ratings)} ${movie.n_ratings === 1 ? "person" : "people"}`);
        }
        if (Number.isFinite(movie.mean_rating) && movie.n_ratings > 0) {
          parts.push(`${movie.mean_rating.toFixed(1)}★ on average`);
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
    state.lastRecs = data;
    const items = Array.isArray(data.items) ? data.items : [];
    // the API's fallback note explains its ranking formula; the page says it in plain words
    let note = data.fallback ? POPULAR_NOTE : data.note || "";
    if (!items.length) note = data.fallback ? NOTHING_PASSES : data.note || NOTHING_PASSES;
    els.recsNote.textContent = note;
    els.recsNote.hidden = !note;
    els.recsHeading.textContent = data.fallback
      ? "Popular movies"
      : items.length ? `Top ${items.length} for you` : "For you";
    // why the list is in this order, one plain sentence, when the server says it
    const order = typeof data.order_note === "string" ? data.order_note.trim() : "";
    els.recsOrder.textContent = order;
    els.recsOrder.hidden = !order;
    els.recsList.replaceChildren(
      ...items.map((item) => {
        let badge = null;
        if (Number.isFinite(item.predicted_rating)) {
          const value = item.predicted_rating.toFixed(1);
          badge = el("span", {
            class: "predicted",
            title: data.fallback ? "Average rating" : "Your predicted rating",
            text: `★ ${value}`,
            "aria-label": data.fallback ? `${value} stars on average` : `predicted ${value} stars`,
          });
        }
        return el(
          "li",
          { class: "rec", "data-movie-id": item.movie_id },
          el(
            "div",
            { class: "rec-head" },
            el("span", { class: "rec-title" }, ...titleParts(item)),
            badge,
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

  // ---------------------------------------------------------------------------- filters

  // A whole number typed in `input`, `fallback` when it is empty, or an error message.
  function wholeNumber(input, name, { min, max, fallback = null }) {
    const text = input.value.trim();
    if (text === "") {
      // a number field reads "" for text it cannot parse too ("12e")
      if (input.validity && input.validity.badInput) return { error: `${name}: type a number.` };
      return { value: fallback };
    }
    const value = Number(text);
    const range = max === undefined ? `${min} or more` : `from ${min} to ${max}`;
    if (!Number.isInteger(value) || value < min || (max !== undefined && value > max)) {
      return { error: `${name}: a whole number ${range}, please.` };
    }
    return { value };
  }

  // The filters as the API takes them ({k, year_min, year_max, min_ratings}), or an error.
  function readFilters() {
    const fields = {
      k: wholeNumber(els.filterK, "How many", { min: 1, max: state.maxK, fallback: DEFAULT_K }),
      year_min: wholeNumber(els.filterYearMin, "Released from", { min: 1800, max: 2100 }),
      year_max: wholeNumber(els.filterYearMax, "Released until", { min: 1800, max: 2100 }),
      min_ratings: wholeNumber(els.filterMinRatings, "Rated by at least", { min: 0 }),
    };
    const filters = {};
    for (const [key, field] of Object.entries(fields)) {
      if (field.error) return { error: field.error };
      filters[key] = field.value;
    }
    if (filters.year_min !== null && filters.year_max !== null &&
        filters.year_min > filters.year_max) {
      return { error: `Released from ${filters.year_min} is after released until ${filters.year_max}.` };
    }
    return { filters };
  }

  function saveFilters(filters) {
    try {
      localStorage.setItem(FILTERS_KEY, JSON.stringify(filters));
    } catch (_err) {
      /* private mode */
    }
  }

  function loadFilters() {
    let saved = {};
    try {
      saved = JSON.parse(localStorage.getItem(FILTERS_KEY) || "{}") || {};
    } catch (_err) {
      saved = {};
    }
    const inputs = {
      k: els.filterK, year_min: els.filterYearMin, year_max: els.filterYearMax,
      min_ratings: els.filterMinRatings,
    };
    for (const [key, input] of Object.entries(inputs)) {
      if (Number.isInteger(saved[key])) input.value = String(saved[key]);
    }
    if (readFilters().error) {
      for (const input of Object.values(inputs)) input.value = input === els.filterK ? "10" : "";
    }
  }

  function filtersChanged() {
    const { filters, error } = readFilters();
    showError(els.filtersError, error);
    if (error) return;
    saveFilters(filters);
    refreshRecommendations();
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
    const { filters, error } = readFilters();
    showError(els.filtersError, error);
    els.recsPanel.setAttribute("aria-busy", error ? "false" : "true");
    if (error) return;
    const ratings = [...state.ratings.values()].map((r) => ({
      movie_id: r.movie_id,
      rating: r.rating,
    }));
    const body = { ratings, k: filters.k };
    for (const key of ["year_min", "year_max", "min_ratings"]) {
      if (filters[key] !== null) body[key] = filters[key];
    }
    try {
      const data = await api("/recommendations", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
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
  const filtersChangedSoon = debounce(filtersChanged, 250);

  // The model's facts the server put into the page (the same as /health's), if any.
  function readPageModel() {
    try {
      const model = JSON.parse(document.body.dataset.model || "null");
      if (model && model.scale) applyModel(model);
    } catch (_err) {
      /* served as a plain file: /health fills in */
    }
  }

  function applyModel(model) {
    const old = state.scale;
    state.scale = model.scale;
    if (model.limits && Number.isInteger(model.limits.max_k)) {
      state.maxK = model.limits.max_k;
      els.filterK.max = String(state.maxK);
    }
    els.modelInfo.textContent = describeModel(model);
    els.modelInfo.classList.remove("error");
    const { minimum, maximum, step } = model.scale;
    if (old.minimum !== minimum || old.maximum !== maximum || old.step !== step) {
      renderRatings();
      renderSearch();
      if (state.lastRecs) renderRecommendations(state.lastRecs);
    }
  }

  async function loadHealth() {
    try {
      const health = await api("/health");
      applyModel({ ...health.model, version: health.version, limits: health.limits });
    } catch (err) {
      els.modelInfo.textContent = `Cannot read the model: ${err.message}`;
      els.modelInfo.classList.add("error");
    }
  }

  function start() {
    readPageModel();
    loadRatings();
    loadFilters();
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
    els.filters.addEventListener("input", filtersChangedSoon);
    els.filters.addEventListener("submit", (event) => {
      event.preventDefault();
      filtersChanged();
    });
    // both at once: the list does not wait for /health (the page already has the scale)
    loadRecommendations();
    loadHealth();
  }

  start();
})();
