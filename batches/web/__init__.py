"""The HTML pages: dashboard, new batch (with live preview), batch page (live progress,
results, actions), their forms and urls.

Modules: pages (dashboard, batch page and its polled fragments), new (the new-batch page and
its preview), actions (POST-only buttons), rows (the HTML of the rows a page repeats), forms,
urls, context_processors. Views are thin: they check ownership and call services. It must never
import the engine's slice or the providers, and nothing below it may import it.
"""
