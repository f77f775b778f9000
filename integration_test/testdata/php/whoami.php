<?php
// Answers with the logged-in user, or "anonymous" when the request's
// session has no user: what a page sees after its session was lost.
require __DIR__ . '/lib.php';

session_start();
usleep(20000); // the page's work, with the session open
echo $_SESSION['user'] ?? 'anonymous', "\n";
