package journal

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
)

// volatile are fields others own: istiod rotates the caBundle of webhooks, the Deployment controller
// numbers revisions. They never count as a change or as drift, and undo never writes them back.
var volatile = [][]string{
	{"metadata", "annotations", "deployment.kubernetes.io/revision"},
	{"webhooks", "*", "clientConfig", "caBundle"},
}

// settled are fields an autoscaler owns between steps (a Deployment's replica count): a change since the
// step is never a conflict. Undo puts one back only when the step changed it and, with an autoscaler
// targeting the object, only from 0, where the autoscaler does nothing: otherwise undoing a step days
// later would scale a gateway under load down to the count it had then.
var settled = map[string]bool{strings.Join([]string{"spec", "replicas"}, fieldSep): true}

// fieldSep joins path segments into a map key; label keys hold dots and slashes, never NUL.
const fieldSep = "\x00"

// leaves flattens an object into path → value, with volatile fields removed. Maps are walked; lists
// are leaves (a merge or update replaces a list whole), compared without their volatile fields.
func leaves(obj map[string]any) map[string]any {
	o := runtime.DeepCopyJSON(obj)
	for _, v := range volatile {
		strip(o, v)
	}
	out := map[string]any{}
	var walk func(prefix []string, m map[string]any)
	walk = func(prefix []string, m map[string]any) {
		for k, v := range m {
			p := append(append([]string{}, prefix...), k)
			if sub, ok := v.(map[string]any); ok {
				walk(p, sub) // an empty map is no field: {} and absent are the same to an apiserver
				continue
			}
			out[strings.Join(p, fieldSep)] = v
		}
	}
	walk(nil, o)
	return out
}

// strip removes path (with "*" for any list element) from o.
func strip(o any, path []string) {
	if len(path) == 0 {
		return
	}
	switch x := o.(type) {
	case map[string]any:
		if len(path) == 1 {
			delete(x, path[0])
			return
		}
		if path[0] != "*" {
			strip(x[path[0]], path[1:])
		}
	case []any:
		if path[0] == "*" {
			for _, e := range x {
				strip(e, path[1:])
			}
		}
	}
}

// Drift is what changed on an object since the step left it.
type Drift struct {
	// Changed are the fields the step changed (before → after).
	Changed []string
	// Conflicts are fields the step changed that someone changed again since: undoing would overwrite
	// their change.
	Conflicts []string
	// Kept counts fields changed since the step that the step never touched: undo leaves them.
	Kept int
}

// Compare weighs the state before the step, the state it left and the live object. autoscaled says an
// autoscaler targets the object (see settled).
func Compare(before, after, live map[string]any, autoscaled bool) (Drift, []string) {
	b, a, l := leaves(before), leaves(after), leaves(live)
	var d Drift
	var restore []string
	changed := map[string]bool{}
	for k := range union(b, a) {
		bv, bok := b[k]
		av, aok := a[k]
		if bok == aok && equality.Semantic.DeepEqual(bv, av) {
			continue
		}
		changed[k] = true
		d.Changed = append(d.Changed, fieldName(k))
		lv, lok := l[k]
		switch {
		case lok == bok && equality.Semantic.DeepEqual(lv, bv):
			// already back as it was
		case settled[k]:
			if !autoscaled || lok && isZero(lv) {
				restore = append(restore, k)
			}
		case lok == aok && equality.Semantic.DeepEqual(lv, av):
			restore = append(restore, k) // as the step left it: put back
		default:
			d.Conflicts = append(d.Conflicts, fieldName(k))
			restore = append(restore, k)
		}
	}
	for k := range union(a, l) {
		av, aok := a[k]
		lv, lok := l[k]
		if !changed[k] && (aok != lok || !equality.Semantic.DeepEqual(av, lv)) {
			d.Kept++
		}
	}
	sort.Strings(d.Changed)
	sort.Strings(d.Conflicts)
	sort.Strings(restore)
	return d, restore
}

// Desired is live with the given fields (leaf keys from Compare) set back to their value in before,
// or removed where before lacked them; volatile fields keep their live value.
func Desired(before, live map[string]any, fields []string) map[string]any {
	out := runtime.DeepCopyJSON(live)
	b := leaves(before)
	for _, k := range fields {
		path := strings.Split(k, fieldSep)
		if v, ok := b[k]; ok {
			set(out, path, runtime.DeepCopyJSONValue(v))
		} else {
			unset(out, path)
		}
	}
	for _, v := range volatile {
		copyVolatile(out, live, v)
	}
	return out
}

func set(m map[string]any, path []string, v any) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// unset removes path and every map it leaves empty: an emptied parent is no field to an apiserver's
// reader but fails a schema that requires its fields (a Gateway's parametersRef: {}).
func unset(m map[string]any, path []string) (empty bool) {
	if len(path) == 1 {
		delete(m, path[0])
		return len(m) == 0
	}
	next, ok := m[path[0]].(map[string]any)
	if !ok {
		return false
	}
	if unset(next, path[1:]) {
		delete(m, path[0])
	}
	return len(m) == 0
}

// copyVolatile puts live's value of a volatile field into out wherever out still has the place for it.
func copyVolatile(out, live any, path []string) {
	if len(path) == 0 {
		return
	}
	switch l := live.(type) {
	case map[string]any:
		o, ok := out.(map[string]any)
		if !ok {
			return
		}
		if len(path) == 1 {
			if v, ok := l[path[0]]; ok {
				o[path[0]] = runtime.DeepCopyJSONValue(v)
			}
			return
		}
		if _, ok := o[path[0]]; ok {
			copyVolatile(o[path[0]], l[path[0]], path[1:])
		}
	case []any:
		o, ok := out.([]any)
		if !ok || path[0] != "*" {
			return
		}
		for i := range min(len(o), len(l)) {
			copyVolatile(o[i], l[i], path[1:])
		}
	}
}

func union(a, b map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// fieldName is a leaf key for people: metadata.labels["istio.io/rev"].
func fieldName(k string) string {
	var b strings.Builder
	for i, p := range strings.Split(k, fieldSep) {
		if strings.ContainsAny(p, "./") {
			fmt.Fprintf(&b, "[%q]", p)
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

// isZero says a JSON number is 0.
func isZero(v any) bool {
	switch n := v.(type) {
	case int64:
		return n == 0
	case float64:
		return n == 0
	case int:
		return n == 0
	case int32:
		return n == 0
	}
	return false
}
