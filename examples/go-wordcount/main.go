// go-wordcount: answers `words.count` for {"text": "..."} with
// {"words": N, "unique": M, "top": [["the", 3], ...], "total": T}, where
// top is the three most frequent words and total the running count of words
// across all calls, kept in the plugin's kv store.
package main

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"switchyard.dev/plugin"
)

func init() {
	plugin.Register(plugin.Manifest{
		Name:        "go-wordcount",
		Version:     "0.1.0",
		Description: "Counts words (Go)",
		Claims:      []string{"words.count"},
	}, count)
}

// main is never called: the module is a reactor, and init registers the plugin.
func main() {}

func count(msg plugin.Message) (string, *plugin.Failure) {
	var in struct {
		Text *string `json:"text"`
	}
	if err := json.Unmarshal([]byte(msg.Data), &in); err != nil || in.Text == nil {
		return "", plugin.Fail("INVALID_DATA", `expected {"text": "..."}`)
	}

	words := strings.FieldsFunc(strings.ToLower(*in.Text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r) && r != '\''
	})
	freq := map[string]int{}
	for _, w := range words {
		freq[w]++
	}
	unique := make([]string, 0, len(freq))
	for w := range freq {
		unique = append(unique, w)
	}
	sort.Slice(unique, func(i, j int) bool {
		a, b := unique[i], unique[j]
		return freq[a] > freq[b] || freq[a] == freq[b] && a < b
	})
	top := [][2]any{}
	for _, w := range unique[:min(3, len(unique))] {
		top = append(top, [2]any{w, freq[w]})
	}

	total, fail := addTotal(len(words))
	if fail != nil {
		return "", fail
	}
	reply, _ := json.Marshal(map[string]any{"words": len(words), "unique": len(freq), "top": top, "total": total})
	plugin.Log(plugin.Debug, "counted "+strconv.Itoa(len(words))+" words")
	return string(reply), nil
}

// addTotal adds n to the running total in kv and returns the new total.
func addTotal(n int) (int, *plugin.Failure) {
	total := 0
	if v, ok := plugin.KV.Get("total"); ok {
		total, _ = strconv.Atoi(v)
	}
	total += n
	return total, plugin.FailureOf(plugin.KV.Set("total", strconv.Itoa(total)), "KV_FAILED")
}
