package httpapi

import (
	"bytes"
	_ "embed"
	"net/http"
	"sync"

	"sigs.k8s.io/yaml"
)

// openapiYAML is the API's document, written by hand: what each route
// answers, status by status. The end-to-end tests validate every request
// and answer they make against it (cmd/authd/openapi_test.go), and
// openapi_test.go holds its paths and the routes to each other.
//
//go:embed openapi.yaml
var openapiYAML []byte

// openapiJSON is the document as JSON, converted once from the embedded
// YAML (New asks for it, so a broken file stops start-up, not a request).
var openapiJSON = sync.OnceValue(func() []byte {
	doc, err := yaml.YAMLToJSON(openapiYAML)
	if err != nil {
		panic("httpapi: openapi.yaml is not YAML: " + err.Error()) // embedded at build time; a test reads it
	}
	return doc
})

// OpenAPI returns the bytes GET /api/v1/openapi.json serves: for tests
// that validate traffic against the document without a server.
func OpenAPI() []byte { return bytes.Clone(openapiJSON()) }

// openapiContentType is the document's media type, as huma served it.
const openapiContentType = "application/openapi+json"

func handleOpenAPI(doc []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", openapiContentType)
		w.Write(doc)
	})
}
