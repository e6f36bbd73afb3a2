package cli

import "strconv"

// Ready renders ready/desired counts ("2/3").
func Ready(ready, desired int32) string {
	return strconv.Itoa(int(ready)) + "/" + strconv.Itoa(int(desired))
}
