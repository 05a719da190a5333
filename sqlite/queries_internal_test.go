package sqlite

import (
	"reflect"
	"regexp"
	"strconv"
)

// statement is one SQL statement of the backend's, by the name of its
// field in queries.
type statement struct{ name, sql string }

// statements returns every statement of qs, in the order of its fields.
func statements(qs queries) []statement {
	v := reflect.ValueOf(qs)
	var out []statement
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.String {
			out = append(out, statement{v.Type().Field(i).Name, f.String()})
		}
	}
	return out
}

var paramRE = regexp.MustCompile(`\?(\d+)`)

// maxParam is the highest ?N that q names.
func maxParam(q string) int {
	n := 0
	for _, m := range paramRE.FindAllStringSubmatch(q, -1) {
		k, _ := strconv.Atoi(m[1])
		n = max(n, k)
	}
	return n
}
