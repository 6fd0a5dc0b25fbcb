"use strict";
// Proves the script arrived and ran: the page's status line changes.
document.addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status");
  status.textContent = "JavaScript ran: every subresource was served.";
  status.className = "ran";
});
