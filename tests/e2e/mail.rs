//! Mail off the request path, against moto's SQS and SES: endpoints queue a job and answer; the
//! `mailer` binary, fed by `MailPump` as Lambda's SQS event source mapping feeds it, sends it,
//! tries a refused send again after a doubling wait, leaves what never goes on the dead-letter
//! queue, and never mails one job twice.

use std::time::Duration;

use e2e::lambda::{Event, Function, Outcome, Stack, TEST_MAX_ATTEMPTS, sqs, sqs_event};
use e2e::*;
use serde_json::{Value, json};

/// A sender moto (like SES) refuses until `accept_sender` verifies it.
fn refused_sender() -> String {
    format!("refused-{}@example.com", uuid::Uuid::new_v4().simple())
}

async fn accept_sender(sender: &str) {
    let ses = aws_sdk_sesv2::Client::new(&shared::wiring::aws_config().await.unwrap());
    ses.create_email_identity().email_identity(sender).send().await.unwrap();
}

async fn wait_until(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what} within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn signup(stack: &Stack, email: &str) {
    let f = stack.function("signup").await;
    let r = f.http(Event::post("/auth/signup", json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(r.status, 202, "{r:?}");
}

#[tokio::test]
async fn given_a_mailing_endpoint_then_it_answers_having_queued_a_job_that_carries_only_the_mail() {
    let stack = Stack::new().await;
    // The function, without the stack's mailer: the job stays on the queue.
    let signup = Function::start(
        "signup",
        &[
            ("TABLE_NAME", &stack.table),
            ("MAIL_QUEUE_URL", &stack.queue),
            ("PUBLIC_BASE_URL", "https://auth.example.com"),
            ("ARGON2_MEMORY_KIB", "256"),
            ("ARGON2_ITERATIONS", "1"),
        ],
    )
    .await;
    let email = unique_email();
    let r = signup.http(Event::post("/auth/signup", json!({"email": email, "password": PASSWORD}))).await;
    assert_eq!(r.status, 202);
    assert!(sent_to(&email).await.is_empty(), "nothing reaches SES from the request");
    let out = sqs().await.receive_message().queue_url(&stack.queue).max_number_of_messages(10).send().await.unwrap();
    let messages = out.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1);
    let job: Value = serde_json::from_str(messages[0].body.as_deref().unwrap()).unwrap();
    let fields: Vec<&str> = job.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(fields, ["html", "id", "subject", "text", "to"], "the rendered mail and its id, nothing else");
    assert_eq!(job["to"], email.as_str());
    assert!(job["text"].as_str().unwrap().contains("https://auth.example.com/auth/verify-email?token="));
    let text = job.to_string();
    assert!(!text.contains(PASSWORD) && !text.contains("argon2"), "no credential material: {text}");
    // The queue encrypts its messages at rest (the template's setting, here on moto's queue).
    let attrs = sqs()
        .await
        .get_queue_attributes()
        .queue_url(&stack.queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::SqsManagedSseEnabled)
        .send()
        .await
        .unwrap();
    assert_eq!(
        attrs
            .attributes
            .unwrap()
            .get(&aws_sdk_sqs::types::QueueAttributeName::SqsManagedSseEnabled)
            .map(String::as_str),
        Some("true")
    );
}

#[tokio::test]
async fn given_ses_refusing_then_a_queued_mail_is_delivered_once_ses_accepts_again() {
    let sender = refused_sender();
    let stack = Stack::new().await.mailer_with("MAIL_FROM", &sender);
    let email = unique_email();
    signup(&stack, &email).await;
    let mailer = &stack.pump().await.mailer;
    wait_until("a refused delivery", 10, async || mailer.output().contains("mail_failed")).await;
    assert!(sent_to(&email).await.is_empty());
    accept_sender(&sender).await;
    let token = token_from_mail(&email, "verify").await;
    assert!(!token.is_empty());
    assert_eq!(mails_to(&email).await.len(), 1, "delivered once");
    assert!(stack.dead_lettered().await.is_empty());
    assert!(mailer.output().contains("\"retry_in_s\":1"), "the first retry waits the base: {}", mailer.output());
}

#[tokio::test]
async fn given_a_job_delivered_again_after_it_was_sent_then_it_mails_once() {
    let stack = Stack::new().await;
    let job = shared::mail::queue::MailJob::new(&shared::mail::Mail {
        to: unique_email(),
        subject: "redelivery".into(),
        text: "once".into(),
        html: None,
    });
    let sqs = sqs().await;
    sqs.send_message().queue_url(&stack.queue).message_body(job.to_json()).send().await.unwrap();
    let received = sqs
        .receive_message()
        .queue_url(&stack.queue)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap();
    let event = sqs_event(&received, &stack.queue_arn);
    // Two deliveries of one job at once (at-least-once delivery), then a redelivery after the
    // send succeeded (a lost delete): one mail, and every invocation reports success.
    let (a, b) = tokio::join!(stack.mailer(), stack.mailer());
    let (ra, rb) = tokio::join!(a.invoke(event.clone()), b.invoke(event.clone()));
    let failures = |o: Outcome| match o {
        Outcome::Response(v) => v["batchItemFailures"].as_array().map(Vec::len).unwrap_or(0),
        Outcome::Error(e) => panic!("{e}"),
    };
    // The loser of the claim finds the job busy and asks for it again; it then finds it sent.
    let busy = failures(ra) + failures(rb);
    assert!(busy <= 1, "{}\n{}", a.output(), b.output());
    assert_eq!(failures(a.invoke(event.clone()).await), 0);
    assert_eq!(failures(b.invoke(event).await), 0);
    assert_eq!(mails_to(&job.to).await.len(), 1, "{}\n{}", a.output(), b.output());
    assert!(a.output().contains("mail_duplicate") && b.output().contains("mail_duplicate"));
}

#[tokio::test]
async fn given_a_poison_job_or_a_mail_ses_always_refuses_then_it_ends_on_the_dead_letter_queue() {
    let sender = refused_sender();
    let stack = Stack::new().await.mailer_with("MAIL_FROM", &sender);
    let sqs = sqs().await;
    sqs.send_message().queue_url(&stack.queue).message_body("{\"not\": \"a job\"}").send().await.unwrap();
    let email = unique_email();
    signup(&stack, &email).await;
    let mailer = &stack.pump().await.mailer;
    // After TEST_MAX_ATTEMPTS deliveries (retry waits 1, 2, 4 s for the refused mail) SQS moves both.
    wait_until("both jobs on the dead-letter queue", 30, async || stack.dead_lettered().await.len() == 2).await;
    let dead = stack.dead_lettered().await;
    assert!(dead.contains(&"{\"not\": \"a job\"}".to_owned()), "{dead:?}");
    assert!(dead.iter().any(|d| d.contains(&email)), "{dead:?}");
    assert!(sent_to(&email).await.is_empty());
    let out = mailer.output();
    assert_eq!(out.matches("mail_poison").count(), TEST_MAX_ATTEMPTS as usize, "{out}");
    assert_eq!(out.matches("\"event\":\"mail_failed\"").count(), TEST_MAX_ATTEMPTS as usize, "{out}");
    assert!(out.contains("\"dead_letter\":true"), "the last attempt says so: {out}");
}
