<?php
// The routes the integration tests drive. Every response goes through the
// web middleware group: the session cookie is encrypted afresh each time.
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Route;

// Starts a session with the counter at zero.
Route::get('/start', function (Request $request) {
    $request->session()->put('n', 0);
    return response("0\n", 200, ['Content-Type' => 'text/plain']);
});

// A writer: reads the counter, works for 50 ms and writes counter+1 back.
// Laravel reads the whole session when the request starts and writes it
// when it ends, with no lock: two of these at once lose an increment.
Route::get('/incr', function (Request $request) {
    $n = $request->session()->get('n', 0) + 1;
    usleep(50000);
    $request->session()->put('n', $n);
    return response("$n\n", 200, ['Content-Type' => 'text/plain']);
});

Route::get('/read', function (Request $request) {
    return response($request->session()->get('n', 0) . "\n", 200, ['Content-Type' => 'text/plain']);
});

// Logs a user in as Laravel's documentation asks: a new session ID, and
// the old session deleted at once, on a change of privilege.
Route::get('/login', function (Request $request) {
    $request->session()->regenerate(true);
    $request->session()->put('user', preg_replace('/[^a-z]/', '', $request->query('user', 'alice')));
    return response($request->session()->get('user') . "\n", 200, ['Content-Type' => 'text/plain']);
});

// The page's AJAX calls: who is logged in, or "anonymous" once the
// session was lost.
Route::get('/whoami', function (Request $request) {
    usleep(20000);
    return response($request->session()->get('user', 'anonymous') . "\n", 200, ['Content-Type' => 'text/plain']);
});
