package journal

import (
	"regexp"
	"strings"
)

// Credentials are kubectl's credential and connection flags: never recorded (step.CommandLine) and,
// in entries written before that, never shown (Entry.redact, on every read). An entry is readable by everyone who can read
// ConfigMaps in the Istio namespace.
var Credentials = map[string]bool{
	"token": true, "password": true, "username": true, "client-key": true, "client-certificate": true,
	"certificate-authority": true, "as": true, "as-group": true, "as-uid": true, "as-user-extra": true,
	"kubeconfig": true, "server": true, "tls-server-name": true, "insecure-skip-tls-verify": true,
}

// Redacted stands where a credential was.
const Redacted = "REDACTED"

// userinfo is a URL's scheme and the user:password before its host.
var userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s'"@]*@`)

// RedactURL hides the userinfo of every URL in s (https://user:pass@host/ → https://REDACTED@host/),
// as a --probe-url may carry it, wherever it stands in a command line.
func RedactURL(s string) string {
	return userinfo.ReplaceAllString(s, "${1}"+Redacted+"@")
}

// RedactArgs hides credential flags' values (--token=X, --token X) and URL userinfo in a raw command
// line, as entries written before Command existed recorded it.
func RedactArgs(args []string) []string {
	out := make([]string, len(args))
	hide := false
	for i, a := range args {
		switch {
		case hide:
			out[i], hide = Redacted, false
		case strings.HasPrefix(a, "--"):
			name, _, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			switch {
			case Credentials[name] && hasValue:
				out[i] = "--" + name + "=" + Redacted
			case Credentials[name] && name != "insecure-skip-tls-verify":
				out[i], hide = a, true
			default:
				out[i] = RedactURL(a)
			}
		default:
			out[i] = RedactURL(a)
		}
	}
	return out
}

// redact hides what an entry may hold of credentials, on every read: raw Args of old entries, URL
// userinfo in the command line.
func (e *Entry) redact() {
	if len(e.Args) > 0 {
		e.Args = RedactArgs(e.Args)
	}
	e.Command = RedactURL(e.Command)
}
