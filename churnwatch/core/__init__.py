"""The ground floor: the vocabulary every layer shares (errors, events, Redis key names,
units, severities). Imports nothing of churnwatch's."""
