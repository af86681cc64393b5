/** The page shell every dashboard page shares: head, navigation, the refresh hook of dashboard.js. */
import { html, type Html } from "./html.ts";

export interface PageOptions {
  /** Reload the page's main part every so many seconds (while something is still running). */
  refreshSeconds?: number;
}

export function page(title: string, body: Html, opts: PageOptions = {}): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · stagebeam</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/dashboard.css">
<script src="/assets/dashboard.js" defer></script>
</head>
<body>
<header><a class="brand" href="/runs">stagebeam</a><nav><a href="/runs">Runs</a><a href="/queues">Queues</a></nav></header>
<main${opts.refreshSeconds !== undefined ? html` data-refresh="${opts.refreshSeconds}"` : ""}>
<h1>${title}</h1>
${body}
</main>
</body>
</html>
`.text;
}
