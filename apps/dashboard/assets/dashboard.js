// Refreshes a page's <main> in place while it says so (data-refresh="<seconds>"), reusing the
// server's own rendering: the page is fetched again and its <main> swapped in.
const main = document.querySelector("main[data-refresh]");
if (main) {
  const seconds = Number(main.dataset.refresh);
  const refresh = async () => {
    try {
      const res = await fetch(location.href, { headers: { accept: "text/html" }, cache: "no-store" });
      if (!res.ok) return;
      const next = new DOMParser().parseFromString(await res.text(), "text/html").querySelector("main");
      if (!next) return;
      main.innerHTML = next.innerHTML;
      if (!next.hasAttribute("data-refresh")) {
        main.removeAttribute("data-refresh");
        clearInterval(timer);
      }
    } catch {
      // The next tick tries again; a dashboard restart should not need a reload.
    }
  };
  const timer = setInterval(refresh, seconds * 1000);
}
