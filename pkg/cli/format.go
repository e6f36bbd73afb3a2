package cli

import "strconv"

func formatInt(i int) string { return strconv.Itoa(i) }

// Ready renders ready/desired counts.
func Ready(ready, desired int32) string { return itoaReady(ready, desired) }
