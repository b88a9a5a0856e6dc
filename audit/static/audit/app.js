// Shared behaviour. No inline script anywhere: pages opt in with data- attributes.
"use strict";
