package httpapi

import "testing"

func TestDescribeAgent(t *testing.T) {
	for ua, want := range map[string]string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0 Safari/537.36":  "Chrome / Windows",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/141.0 Safari/537.36 Edg/141.0":            "Edge / Windows",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Version/18.0 Mobile Safari/604.1": "Safari / iOS",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:140.0) Gecko/20100101 Firefox/140.0":                          "Firefox / macOS",
		"Mozilla/5.0 (Linux; Android 15) AppleWebKit/537.36 Chrome/141.0 Mobile Safari/537.36":                         "Chrome / Android",
		"curl/8.5.0": "curl",
		"":           "",
		"<script>":   "",
	} {
		if got := describeAgent(ua); got != want {
			t.Errorf("describeAgent(%q) = %q, want %q", ua, got, want)
		}
	}
}

// The text on the accent is the one of black and white with the higher
// contrast.
func TestOnAccent(t *testing.T) {
	for accent, want := range map[string]string{
		"#1d4ed8": "#ffffff", "#0f766e": "#ffffff", "#000000": "#ffffff",
		"#ffffff": "#000000", "#facc15": "#000000", "#f46800": "#000000", "bad": "#ffffff",
	} {
		if got := onAccent(accent); got != want {
			t.Errorf("onAccent(%s) = %s, want %s", accent, got, want)
		}
	}
}
