// sirocco replay test page: marks the page as scripted once loaded.
document.addEventListener('DOMContentLoaded', function () {
  var note = document.getElementById('scripted');
  if (note) { note.textContent = 'scripts ran'; }
});
