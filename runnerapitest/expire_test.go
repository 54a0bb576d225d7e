package runnerapitest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestParseExpireIn(t *testing.T) {
	const day = 24 * time.Hour
	good := map[string]time.Duration{
		"3600":                 time.Hour,
		"30 mins":              30 * time.Minute,
		"7d":                   7 * day,
		"2 weeks":              14 * day,
		"1 day 2 hours":        day + 2*time.Hour,
		"1 day and 2 hours":    day + 2*time.Hour,
		"1h30m":                90 * time.Minute,
		"1 Month":              30 * day,
		" 1 year ":             365 * day,
		"2 days, 3 hours, 4 s": 2*day + 3*time.Hour + 4*time.Second,
	}
	for in, want := range good {
		got, err := parseExpireIn(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
	for _, in := range []string{"", "soon", "7 fortnights", "d7", "-1d", "1.5h", "99999999999 years", "1000 years"} {
		_, err := parseExpireIn(in)
		assert.Error(t, err, in)
	}
}
