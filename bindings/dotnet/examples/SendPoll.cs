// SendPoll.exe — send a document to a partner through a Layer Security Messaging Service, then
// fetch it as that partner, with the .NET binding's Client (as examples-c/send_poll.c does).
//
//   send-poll SENDER_CONFIG RECIPIENT_CONFIG FILE TO
//
// With the sender's client configuration (the file `layersec init` writes), sends FILE to the
// partner TO: the document is sealed for TO, carried in a signed AS4 message to the service,
// and the service's signed receipt is checked. Prints the MessageId. Then, with the recipient's
// configuration, polls the service: each document is verified, written to the recipient's inbox
// folder and receipted; prints its path, sender, MessageId and size. Then the sender polls too
// and takes the recipient's signed receipt; prints its state.
//
// Exits 0 only if exactly one document arrived, the one sent, with the size of FILE, and its
// signed receipt came back (state "processed"); 1 otherwise, 2 on wrong usage. `make example`
// runs it against a throwaway service (scripts/example-service.sh).
using System;
using System.IO;
using LayerSecurity;

static class SendPoll
{
    static int Report(string what, LayerSecException e)
    {
        Console.Error.WriteLine($"send-poll: {what} failed: {e.Message}");
        return 1;
    }

    static int Main(string[] args)
    {
        if (args.Length != 4)
        {
            Console.Error.WriteLine("usage: send-poll SENDER_CONFIG RECIPIENT_CONFIG FILE TO");
            return 2;
        }
        string senderConfig = args[0], recipientConfig = args[1], file = args[2], to = args[3];
        long size;
        try
        {
            // Only to know what to expect at the other end: SendFile reads the file itself.
            size = new FileInfo(file).Length;
        }
        catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is ArgumentException)
        {
            Console.Error.WriteLine($"cannot open {file}: {e.Message}");
            return 1;
        }

        Client sender, recipient;
        try
        {
            sender = Client.FromConfig(senderConfig);
        }
        catch (LayerSecException e)
        {
            return Report("loading the sender's configuration (ls_client_new_from_config)", e);
        }
        using (sender)
        {
            string messageId;
            try
            {
                messageId = sender.SendFile(file, to);
            }
            catch (QueuedForRetryException e)
            {
                // Not lost: queued in the sender's journal, retried with the same MessageId.
                Console.Error.WriteLine("send-poll: not delivered yet, queued for retry as MessageId " + e.MessageId);
                return Report("sending (ls_client_send_file)", e.Cause);
            }
            catch (LayerSecException e)
            {
                return Report("sending (ls_client_send_file)", e);
            }
            Console.WriteLine("sent: MessageId " + messageId);

            try
            {
                recipient = Client.FromConfig(recipientConfig);
            }
            catch (LayerSecException e)
            {
                return Report("loading the recipient's configuration (ls_client_new_from_config)", e);
            }
            int documents, matching = 0;
            using (recipient)
            {
                try
                {
                    var received = recipient.Poll();
                    foreach (var doc in received)
                    {
                        Console.WriteLine("received: " + doc.Path);
                        Console.WriteLine("  sender: " + doc.Sender);
                        Console.WriteLine("  message id: " + doc.MessageId);
                        Console.WriteLine("  size: " + doc.Size + " bytes");
                        if (doc.MessageId == messageId && doc.Size == size) matching++;
                    }
                    documents = received.Count;
                }
                catch (LayerSecException e)
                {
                    return Report("polling (ls_client_poll)", e);
                }
            }
            Console.WriteLine($"polled: {documents} document(s)");

            // The sender's poll takes the partner's signed receipt (no document comes here).
            int forSender;
            ReceiptState receipt;
            try
            {
                forSender = sender.Poll().Count;
                receipt = sender.GetReceiptState(messageId);
            }
            catch (LayerSecException e)
            {
                return Report("polling for the receipt (ls_client_poll)", e);
            }
            Console.WriteLine("receipt: " + (receipt == ReceiptState.Processed ? "processed"
                                             : receipt == ReceiptState.Waiting ? "waiting"
                                             : receipt == ReceiptState.Failed ? "failed" : "none"));

            if (documents == 1 && matching == 1 && forSender == 0 && receipt == ReceiptState.Processed)
            {
                Console.WriteLine($"send-poll: OK, the document arrived ({size} bytes)");
                return 0;
            }
            Console.Error.WriteLine($"send-poll: expected exactly the one document sent ({size} bytes) and its receipt, " +
                                    $"got {documents} document(s), {matching} matching, receipt state {receipt}");
            return 1;
        }
    }
}
