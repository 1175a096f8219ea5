package httpapi

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// The interactive API page: Swagger UI, its files vendored from the npm
// package swagger-ui-dist (scripts/vendor-swagger-ui.sh) and embedded, so
// /docs works with no internet.
//
//go:embed docs/index.html docs/init.js docs/swagger-ui
var docsFiles embed.FS

// docsCSP lets the page run its own scripts and nothing else: Swagger UI
// sets inline styles, and asks only authd itself for the OpenAPI document
// and the "try it out" requests.
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

func handleDocs() http.Handler {
	page, err := docsFiles.ReadFile("docs/index.html")
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", docsCSP)
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		w.Write(page)
	})
}

func handleDocsAssets() http.Handler {
	sub, err := fs.Sub(docsFiles, "docs")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix("/docs/assets/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			// Files only, no listings.
			writeJSON(w, http.StatusNotFound, map[string]string{"detail": msgNotFound})
			return
		}
		w.Header().Set("Content-Security-Policy", docsCSP)
		// The files change only with the binary.
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}
