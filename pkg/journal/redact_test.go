package journal

import (
	"slices"
	"testing"
)

func TestRedactArgsAndURLs(t *testing.T) {
	got := RedactArgs([]string{"kubectl-istio_upgrade", "shift", "--token=abc", "--as", "admin", "--insecure-skip-tls-verify",
		"--probe-url=https://bob:s3cret@lb.example.com/health", "-y"})
	want := []string{"kubectl-istio_upgrade", "shift", "--token=REDACTED", "--as", "REDACTED", "--insecure-skip-tls-verify",
		"--probe-url=https://REDACTED@lb.example.com/health", "-y"}
	if !slices.Equal(got, want) {
		t.Errorf("RedactArgs\n got %q\nwant %q", got, want)
	}
	for in, want := range map[string]string{
		"kubectl istio-upgrade shift --probe-url='https://u:p@lb/x?a=b c'": "kubectl istio-upgrade shift --probe-url='https://REDACTED@lb/x?a=b c'",
		"kubectl istio-upgrade shift --probe-url=https://u:p@lb/":          "kubectl istio-upgrade shift --probe-url=https://REDACTED@lb/",
		"kubectl istio-upgrade shift --probe-url='https://u:p@lb/'":        "kubectl istio-upgrade shift --probe-url='https://REDACTED@lb/'",
		"kubectl istio-upgrade migrate-ns team@example --to 1-31":          "kubectl istio-upgrade migrate-ns team@example --to 1-31",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
	e := &Entry{Args: []string{"x", "--token", "abc"}, Command: "kubectl istio-upgrade shift --probe-url=https://u:p@lb/"}
	e.redact()
	if e.Args[2] != Redacted || e.Command != "kubectl istio-upgrade shift --probe-url=https://REDACTED@lb/" {
		t.Errorf("entry after redact: %+v", e)
	}
}
