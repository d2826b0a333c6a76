"""Development and demo tools: embedded broker and Redis servers, the feed simulator.
Nothing in the core, infra or domain packages imports them."""
