package kube

import (
	"context"
	"fmt"
	"sort"
	"sync"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Access is one verb on one resource, in one namespace ("" for cluster-scoped resources or every
// namespace): what a step will do, asked of the apiserver before it does anything.
type Access struct {
	Verb        string `json:"verb"`
	Group       string `json:"group,omitempty"`
	Resource    string `json:"resource"`
	Subresource string `json:"subresource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	// Name is the one object the access is on ("" for every object of the resource): what lets a Role
	// grant it by resourceNames (the journal's key Secret, the one ServiceAccount a token is asked for).
	Name string `json:"name,omitempty"`
}

func (a Access) String() string {
	r := a.Resource
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	if a.Group != "" {
		r += "." + a.Group
	}
	s := a.Verb + " " + r
	if a.Name != "" {
		s += " " + a.Name
	}
	if a.Namespace != "" {
		s += " in " + a.Namespace
	}
	return s
}

// Named is a for one object, by name.
func (a Access) Named(name string) Access { a.Name = name; return a }

// Can is a for every verb.
func Can(group, resource, namespace string, verbs ...string) []Access {
	out := make([]Access, 0, len(verbs))
	for _, v := range verbs {
		out = append(out, Access{Verb: v, Group: group, Resource: resource, Namespace: namespace})
	}
	return out
}

// Missing asks the apiserver for each access once and returns those denied, sorted. A namespace with
// several accesses is asked once for its rules (SelfSubjectRulesReview); what those rules do not plainly
// grant, and everything else, is asked one by one (SelfSubjectAccessReview, 8 at a time), so a
// migration of many namespaces costs one request per namespace, not one per verb and resource.
func Missing(ctx context.Context, k kubernetes.Interface, want []Access) ([]Access, error) {
	seen := map[Access]bool{}
	var uniq []Access
	perNS := map[string]int{}
	for _, a := range want {
		if !seen[a] {
			seen[a] = true
			uniq = append(uniq, a)
			if a.Namespace != "" {
				perNS[a.Namespace]++
			}
		}
	}
	granted := map[string][]authzv1.ResourceRule{}
	for ns, n := range perNS {
		if n < 2 {
			continue
		}
		r, err := k.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authzv1.SelfSubjectRulesReview{Spec: authzv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
		if err == nil && !r.Status.Incomplete {
			granted[ns] = r.Status.ResourceRules
		}
	}
	if len(granted) > 0 {
		rest := uniq[:0:0]
		for _, a := range uniq {
			if rules, ok := granted[a.Namespace]; !ok || !RulesAllow(rules, a) {
				rest = append(rest, a)
			}
		}
		uniq = rest
	}
	var (
		mu       sync.Mutex
		missing  []Access
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, 8)
	for _, a := range uniq {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			r, err := k.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authzv1.ResourceAttributes{Verb: a.Verb, Group: a.Group, Resource: a.Resource, Subresource: a.Subresource, Namespace: a.Namespace, Name: a.Name}}},
				metav1.CreateOptions{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				if firstErr == nil {
					firstErr = fmt.Errorf("asking the apiserver whether %s is allowed: %w", a, err)
				}
			case !r.Status.Allowed:
				missing = append(missing, a)
			}
		}()
	}
	wg.Wait()
	sort.Slice(missing, func(i, j int) bool { return missing[i].String() < missing[j].String() })
	return missing, firstErr
}

// RulesAllow says RBAC rules grant a, as RBAC matches them: verb, API group and resource each equal
// or "*", a subresource by "resource/sub", "resource/*" or "*/sub"; a rule limited to resourceNames
// grants access to those objects only, never to the whole kind.
func RulesAllow(rules []authzv1.ResourceRule, a Access) bool {
	for _, r := range rules {
		if len(r.ResourceNames) > 0 && (a.Name == "" || !matches(r.ResourceNames, a.Name)) {
			continue
		}
		if !matches(r.Verbs, a.Verb) || !matches(r.APIGroups, a.Group) {
			continue
		}
		for _, res := range r.Resources {
			if resourceMatches(res, a.Resource, a.Subresource) {
				return true
			}
		}
	}
	return false
}

func matches(list []string, x string) bool {
	for _, v := range list {
		if v == "*" || v == x {
			return true
		}
	}
	return false
}

func resourceMatches(rule, resource, sub string) bool {
	if rule == "*" {
		return true
	}
	if sub == "" {
		return rule == resource
	}
	return rule == resource+"/"+sub || rule == resource+"/*" || rule == "*/"+sub
}
