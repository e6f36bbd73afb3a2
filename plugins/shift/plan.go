package shift

import (
	"fmt"
	"math"
)

// Range is an HPA's minReplicas-maxReplicas.
type Range struct {
	Min int32 `json:"min"`
	Max int32 `json:"max"`
}

func (r *Range) String() string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%d-%d", r.Min, r.Max)
}

// Step is the state after one shift step.
type Step struct {
	// Weight is the requested canary share in percent; Effective is what the replica counts give.
	Weight    int    `json:"weight"`
	Effective int    `json:"effectiveWeight"`
	Canary    int32  `json:"canaryReplicas"`
	Old       int32  `json:"oldReplicas"`
	CanaryHPA *Range `json:"canaryHPA,omitempty"`
	OldHPA    *Range `json:"oldHPA,omitempty"`
}

// Input is what the plan starts from.
type Input struct {
	// Old and Canary are the serving replicas now (a canary still held out of traffic counts 0).
	Old, Canary int32
	// Target and StepSize are percentages; StepSize 0 goes to Target in one step.
	Target, StepSize int
	// HPA is the gateway's original HPA range, nil when it has none.
	HPA *Range
}

// Plan computes the steps from the current split to Target. Traffic is shared by ready pods behind
// the one Service, so a weight is a replica split of the serving total T = Old + Canary, which every
// step keeps (capacity never drops below what served before; a partial weight on a single-pod gateway
// runs two pods). Each side's HPA range is the original range in the same proportion, so the two
// HPAs together scale about as the one did, and neither pulls its side back across the split.
func Plan(in Input) ([]Step, error) {
	total := in.Old + in.Canary
	if total < 1 {
		return nil, fmt.Errorf("no serving gateway pods to shift (old and canary both have 0 replicas)")
	}
	if in.Target < 0 || in.Target > 100 {
		return nil, fmt.Errorf("weight %d is not a percentage", in.Target)
	}
	if in.StepSize < 0 || in.StepSize > 100 {
		return nil, fmt.Errorf("step %d is not a percentage", in.StepSize)
	}
	current := Step{Canary: in.Canary, Old: in.Old}
	current.Weight = effective(in.Canary, in.Old)
	var weights []int
	switch {
	case in.StepSize == 0 || current.Weight == in.Target:
		weights = []int{in.Target}
	case current.Weight < in.Target:
		for w := current.Weight + in.StepSize; w < in.Target; w += in.StepSize {
			weights = append(weights, w)
		}
		weights = append(weights, in.Target)
	default:
		for w := current.Weight - in.StepSize; w > in.Target; w -= in.StepSize {
			weights = append(weights, w)
		}
		weights = append(weights, in.Target)
	}
	var out []Step
	prev := current
	for _, w := range weights {
		s := Split(w, total, in.HPA)
		if s.Canary == prev.Canary && s.Old == prev.Old {
			continue // this weight needs the replicas the previous step already has
		}
		out = append(out, s)
		prev = s
	}
	return out, nil
}

// Split is the replica split (and HPA ranges) for one weight of a gateway that serves with total pods.
func Split(weight int, total int32, hpa *Range) Step {
	s := Step{Weight: weight}
	switch weight {
	case 0:
		s.Old = total
	case 100:
		s.Canary = total
	default:
		t := max(total, 2)
		c := int32(math.Floor(float64(weight)*float64(t)/100 + 0.5))
		s.Canary = min(max(c, 1), t-1)
		s.Old = t - s.Canary
	}
	s.Effective = effective(s.Canary, s.Old)
	if hpa != nil {
		t := s.Canary + s.Old
		s.CanaryHPA = share(*hpa, s.Canary, t)
		s.OldHPA = share(*hpa, s.Old, t)
	}
	return s
}

// share is the HPA range of a side running n of t pods: the original range scaled by n/t, always
// containing n. A side at 0 replicas gets the original range back: the HPA controller does not scale a
// target whose replicas are 0, and the range is right again when the side comes back.
func share(r Range, n, t int32) *Range {
	if n == 0 || n == t {
		return &Range{Min: r.Min, Max: max(r.Max, n)}
	}
	f := float64(n) / float64(t)
	lo := int32(math.Floor(float64(r.Min)*f + 0.5))
	hi := int32(math.Floor(float64(r.Max)*f + 0.5))
	lo = min(max(lo, 1), n)
	return &Range{Min: lo, Max: max(hi, n)}
}

func effective(canary, old int32) int {
	if canary+old == 0 {
		return 0
	}
	return int(math.Floor(float64(canary)*100/float64(canary+old) + 0.5))
}
